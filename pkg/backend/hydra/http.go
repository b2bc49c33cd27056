package hydra

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"time"

	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

func (c *Client) adminURL(path string, q url.Values) string {
	u := *c.admin
	u.Path += path
	u.RawPath = ""
	u.RawQuery = q.Encode()
	return u.String()
}

func decodeClient(call string, body []byte) (*backend.Token, error) {
	var hc hydraClient
	if err := json.Unmarshal(body, &hc); err != nil || hc.ClientID == "" {
		return nil, malformed(call)
	}
	return toToken(&hc), nil
}

func malformed(call string) error {
	return fmt.Errorf("%s: %w: malformed response", call, backend.ErrUnavailable)
}

// request is one HTTP call.
type request struct {
	call        string
	method      string
	url         string
	body        []byte
	contentType string
	basic       string // Authorization header, for the public endpoints
	// carriesSecret marks a call whose request or answer holds a secret: it goes
	// over the connections of Options.SecretHTTPClient, which do not idle with
	// the bytes in their buffers.
	carriesSecret bool
	noRetry       bool
}

func (c *Client) do(ctx context.Context, r request) ([]byte, error) {
	body, _, err := c.doHeader(ctx, r)
	return body, err
}

// doHeader runs a call with retries and returns the body and header of the
// first 2xx answer.
func (c *Client) doHeader(ctx context.Context, r request) ([]byte, http.Header, error) {
	for attempt := 1; ; attempt++ {
		if err := c.limiter.Wait(ctx); err != nil {
			return nil, nil, fmt.Errorf("%s: %w: %w", r.call, backend.ErrUnavailable, err)
		}
		body, header, err := c.attempt(ctx, r)
		if err == nil {
			return body, header, nil
		}
		if r.noRetry || attempt >= maxAttempts || !retryable(err) || ctx.Err() != nil {
			return nil, nil, err
		}
		wait := backend.RetryAfterOf(err)
		if wait > maxRetryWait {
			return nil, nil, err
		}
		if wait == 0 {
			d := baseBackoff << (attempt - 1)
			wait = d/2 + mrand.N(d/2+1)
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, nil, err
		case <-timer.C:
		}
	}
}

func retryable(err error) bool {
	if e, ok := errors.AsType[*backend.APIError](err); ok {
		switch e.StatusCode {
		case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
			http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	return errors.Is(err, backend.ErrUnavailable)
}

func (c *Client) attempt(ctx context.Context, r request) ([]byte, http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, r.url, body)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w: %w", r.call, backend.ErrInvalidConfig, err)
	}
	if r.body != nil {
		ct := r.contentType
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	req.Header.Set("Accept", "application/json")
	switch {
	case r.basic != "":
		req.Header.Set("Authorization", r.basic)
	case c.adminToken != "":
		req.Header.Set("Authorization", "Bearer "+c.adminToken)
	}
	hc := c.http
	switch {
	case r.carriesSecret && c.secretHTTP != nil:
		hc = c.secretHTTP
	case r.carriesSecret:
		req.Close = true
	}
	start := time.Now()
	resp, err := hc.Do(req)
	if c.observe != nil {
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		c.observe(r.call, code, time.Since(start))
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w: %s", r.call, backend.ErrUnavailable, backend.NetworkReason(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w: response cut short", r.call, backend.ErrUnavailable)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return data, resp.Header, nil
	}
	if resp.StatusCode == http.StatusBadRequest && hydraError(data) == concurrentUpdate {
		return nil, nil, fmt.Errorf("%s: %w: HTTP 400, Hydra's database aborted the request for a concurrent update", r.call, backend.ErrUnavailable)
	}
	return nil, nil, apiError(r.call, resp, data)
}

// concurrentUpdate is Hydra's answer (HTTP 400) when its database aborted the
// request's transaction because of a concurrent one, a serialization failure
// that its SQL databases report under concurrent writes (a client's secret set
// while its tokens are issued or revoked): nothing was written, and the same
// request may succeed at once. It is an unavailability, retried, and never
// the refusal of a value that a 400 otherwise is (which stalls an ApiToken).
const concurrentUpdate = "Unable to serialize access due to a concurrent update in another session"

// hydraError is the error field of Hydra's error document.
func hydraError(data []byte) string {
	var p struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(data, &p)
	return p.Error
}

// apiError builds the error of a non-2xx answer. Hydra's OAuth2 error code is kept
// in Type (e.g. invalid_scope); its description is dropped: it may quote input.
func apiError(call string, resp *http.Response, data []byte) *backend.APIError {
	e := backend.NewAPIError(call, resp.StatusCode, nil, backend.RetryAfter(resp.StatusCode, resp.Header))
	var p struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(data, &p) == nil && len(p.Error) <= 64 && oauthErrorCode.MatchString(p.Error) {
		e.Type = p.Error
	}
	return e
}

// oauthErrorCode is the form of an OAuth2 error code (RFC 6749 error values are
// lower-case words joined by underscores); Hydra's admin API sends sentences,
// which are not kept.
var oauthErrorCode = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

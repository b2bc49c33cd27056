package backend

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestAuthTokenRedacts(t *testing.T) {
	const secret = "s3cr3t-value"
	tok := AuthToken(secret)
	creds := Credentials{AccountSID: "TK1", AuthToken: tok}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "token", tok, "creds", creds)
	jsonOut, _ := json.Marshal(creds)
	outputs := map[string]string{
		"String":   tok.String(),
		"%v":       fmt.Sprintf("%v", tok),
		"%+v":      fmt.Sprintf("%+v", creds),
		"%#v":      fmt.Sprintf("%#v", creds),
		"%q":       fmt.Sprintf("%q", tok),
		"%x":       fmt.Sprintf("%x", tok),
		"%s":       fmt.Sprintf("%s", tok),
		"json":     string(jsonOut),
		"slog":     logs.String(),
		"GoString": tok.GoString(),
	}
	for name, out := range outputs {
		if strings.Contains(out, secret) || strings.Contains(out, fmt.Sprintf("%x", secret)) {
			t.Errorf("%s leaks the token: %s", name, out)
		}
		if !strings.Contains(out, redacted) {
			t.Errorf("%s shows no redaction: %s", name, out)
		}
	}
	if tok.Reveal() != secret {
		t.Error("Reveal lost the value")
	}
	var decoded Credentials
	if err := json.Unmarshal([]byte(`{"accountSid":"TK1","authToken":"`+secret+`"}`), &decoded); err != nil || decoded.AuthToken.Reveal() != secret {
		t.Errorf("decoding a response lost the token: %v", err)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	tests := map[string]struct {
		header string
		want   time.Duration
	}{
		"empty":       {"", 0},
		"seconds":     {"3", 3 * time.Second},
		"zero":        {"0", 0},
		"negative":    {"-1", 0},
		"http date":   {now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		"past date":   {now.Add(-time.Minute).Format(http.TimeFormat), 0},
		"nonsense":    {"soon", 0},
		"with spaces": {" 2 ", 2 * time.Second},
	}
	for name, tc := range tests {
		if got := parseRetryAfter(tc.header, now); got != tc.want {
			t.Errorf("%s: parseRetryAfter(%q) = %v, want %v", name, tc.header, got, tc.want)
		}
	}
}

func TestSentinelFor(t *testing.T) {
	tests := map[int]error{
		400: ErrInvalid, 401: ErrUnauthorized, 403: ErrUnauthorized, 404: ErrNotFound, 409: ErrConflict,
		412: ErrPreconditionFailed, 413: ErrInvalid, 422: ErrInvalid, 429: ErrRateLimited, 500: ErrUnavailable, 503: ErrUnavailable,
	}
	for status, want := range tests {
		if got := sentinelFor(status); !errors.Is(got, want) {
			t.Errorf("sentinelFor(%d) = %v, want %v", status, got, want)
		}
	}
}

func TestBackoffIsBoundedAndGrows(t *testing.T) {
	for attempt := 1; attempt <= 10; attempt++ {
		d := backoff(attempt)
		ceiling := min(defaultBackoff<<(attempt-1), maxBackoff)
		if d < ceiling/2 || d > ceiling {
			t.Errorf("backoff(%d) = %v, want within [%v, %v]", attempt, d, ceiling/2, ceiling)
		}
	}
}

func FuzzDecodeProblem(f *testing.F) {
	f.Add(422, []byte(`{"type":"x","title":"bad","errors":[{"field":"scopes[0]","detail":"unknown"}]}`))
	f.Add(429, []byte(`not json`))
	f.Add(500, []byte(`{"title":"`+strings.Repeat("x", 500)+`"}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 400 || status > 599 {
			return
		}
		e := decodeProblem("call", status, http.Header{"Retry-After": {"1"}}, body)
		if e.sentinel == nil || e.Title == "" || e.StatusCode != status {
			t.Fatalf("incomplete error %#v", e)
		}
		if len(e.Title) > 204 || len(e.Fields) > 20 {
			t.Fatalf("unbounded error: title %d, fields %d", len(e.Title), len(e.Fields))
		}
		// Nothing the backend wrote beyond well-formed field names is printed.
		if len(body) > 0 && len(e.Error()) > 200+21*70 {
			t.Fatalf("Error is longer than call, status and 20 field names: %d", len(e.Error()))
		}
		_ = e.Error()
		_ = e.InvalidFields()
	})
}

func FuzzDecodeResponses(f *testing.F) {
	f.Add([]byte(`{"sid":"TK1","authToken":"abcdef0123456789","generation":1,"scopes":["a:b"]}`))
	f.Add([]byte(`{"items":[{"sid":"TK1"}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		resp := &response{status: 200, body: body}
		if tok, err := decode[Token]("get", resp); err == nil && tok == nil {
			t.Fatal("nil token without error")
		}
		if creds, err := decode[Credentials]("credentials", resp); err == nil {
			// Short values can appear in the field names by chance; real tokens are long.
			secret := creds.AuthToken.Reveal()
			if out := fmt.Sprintf("%v %+v %#v", creds, creds, creds); len(secret) >= 12 && strings.Contains(out, secret) {
				t.Fatalf("printing decoded credentials leaks the token: %s", out)
			}
		}
		_, _ = decode[Catalog]("catalog", resp)
	})
}

// TestErrorTextsNeverCarryBackendText: a backend may echo a secret in any text
// of its problem document; none of it reaches Error or InvalidFields.
func TestErrorTextsNeverCarryBackendText(t *testing.T) {
	const secret = "0123456789abcdef-secret"
	body := []byte(`{"type":"https://x/` + secret + `","title":"bad ` + secret + `","detail":"` + secret + `",
		"errors":[{"field":"scopes[1]","detail":"` + secret + `"},{"field":"` + secret + `","detail":"x"}]}`)
	e := decodeProblem("update", 422, http.Header{}, body)
	for _, text := range []string{e.Error(), e.InvalidFields()} {
		if strings.Contains(text, secret) {
			t.Errorf("backend text leaked: %s", text)
		}
	}
	if e.InvalidFields() != "scopes[1]" {
		t.Errorf("InvalidFields %q, want only the well-formed field name", e.InvalidFields())
	}
	if !strings.Contains(e.Error(), "HTTP 422") || !strings.Contains(e.Error(), "update") {
		t.Errorf("Error %q lacks the call or status", e.Error())
	}
}

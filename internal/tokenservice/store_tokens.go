package tokenservice

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// Errors of the store's methods; the handlers map each to its problem response.
var (
	errNotFound       = errors.New("no token has this SID")
	errStale          = errors.New("the token changed since the given ETag")
	errInFlight       = errors.New("a request with this Idempotency-Key is still in flight")
	errKeyReused      = errors.New("this Idempotency-Key was used with another request body")
	errBadCredentials = errors.New("the credentials are not valid")
	errScopeNotHeld   = errors.New("the token does not hold the requested scope")
	// errExternalIDTaken is a patch that would change or clear a token's external
	// id: it may only be set on a token that has none (the claim of an adoption).
	errExternalIDTaken = errors.New("the token already has another external id")
	// errEncode wraps a token that could not be encoded; nothing was changed.
	errEncode = errors.New("encode token")
	// errCommit wraps a commit that failed; nothing was changed.
	errCommit = errors.New("commit")
)

// invalidError lists the fields that make a create or a patch invalid.
type invalidError struct{ fields []backend.FieldError }

func (e *invalidError) Error() string { return fmt.Sprintf("%d invalid fields", len(e.fields)) }

// replayable is the answer to a create or reset, recorded under its Idempotency-Key
// and sent again, byte for byte, to a replay.
type replayable struct {
	Status int
	Body   []byte
	// SID and ETag are those of the token the call made or reset; a replay leaves
	// them empty.
	SID, ETag string
}

// Fresh reports whether the answer is not a replay.
func (r replayable) Fresh() bool { return r.ETag != "" }

// Create makes a token as req asks, once per Idempotency-Key (see idempotent). The
// answer is 201 with the token and its auth token.
func (s *store) Create(key string, req backend.CreateRequest, now time.Time) (replayable, error) {
	return s.idempotent("", "create\x00"+key, bodyHash(req), now, http.StatusCreated,
		func(now time.Time) (*record, any, error) {
			t := newToken(&req, s.catalog.LatestAPIVersion, now)
			if errs := validateToken(&t, s.catalog); len(errs) > 0 {
				return nil, nil, &invalidError{errs}
			}
			rec := &record{Token: t, AuthToken: newAuthToken()}
			return rec, createdToken{Token: rec.Token, AuthToken: rec.AuthToken}, nil
		})
}

// Reset gives the token sid a new auth token, revoking the old one at once, and
// raises its generation, once per Idempotency-Key (see idempotent). The answer is
// 200 with the new credentials.
func (s *store) Reset(sid, key string, now time.Time) (replayable, error) {
	const hash = "reset" // a reset has no body: the key alone names the request
	return s.idempotent(sid, "reset\x00"+sid+"\x00"+key, hash, now, http.StatusOK,
		func(now time.Time) (*record, any, error) {
			current, ok := s.tokens[sid]
			if !ok {
				return nil, nil, errNotFound
			}
			next := *current
			next.AuthToken = newAuthToken()
			next.Generation++
			next.UpdatedAt = now
			return &next, next.credentials(), nil
		})
}

// idempotent runs a create or a reset of the token sid under its idempotency key. A
// record of the key younger than IdempotencyTTL answers instead of change:
// errInFlight until its commit ends (a reset waits for the token first, so only a
// create sees that), errKeyReused when it was made for another body hash, else its
// answer again. Otherwise change (called under mu, with now in UTC) returns the token
// to store and the response to record; both are committed together, and a failed
// commit forgets the record, so that a retry acts afresh.
func (s *store) idempotent(sid, key, hash string, now time.Time, status int,
	change func(now time.Time) (*record, any, error)) (replayable, error) {
	var res replayable
	err := s.transact(sid, func() (*staged, error) {
		if prior, ok := s.idempotency[key]; ok && now.Sub(prior.CreatedAt) <= IdempotencyTTL {
			return nil, prior.replay(hash, &res)
		}
		stamp := now.UTC()
		rec, response, err := change(stamp)
		if err != nil {
			return nil, err
		}
		tokenWrite, err := s.tokenWrite(rec, false)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errEncode, err)
		}
		body, _ := json.Marshal(response)
		idem := &idempotencyRecord{BodyHash: hash, Status: status, Body: body, CreatedAt: stamp, inFlight: true}
		idemWrite, _ := idempotencyWrite(key, idem)
		res = replayable{Status: status, Body: body, SID: rec.SID, ETag: rec.etag()}
		return &staged{writes: []pendingWrite{tokenWrite, idemWrite}, sid: rec.SID, token: rec, idemKey: key, idem: idem}, nil
	})
	if err != nil {
		return replayable{}, err
	}
	return res, nil
}

// replay answers a request with the recorded key into res, or says why it cannot.
func (r *idempotencyRecord) replay(hash string, res *replayable) error {
	switch {
	case r.inFlight:
		return errInFlight
	case r.BodyHash != hash:
		return errKeyReused
	}
	*res = replayable{Status: r.Status, Body: r.Body}
	return nil
}

func bodyHash(v any) string {
	canonical, _ := json.Marshal(v)
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:])
}

// Patch applies a JSON merge patch to the token sid. A non-empty ifMatch must name
// its current ETag (errStale). The external id may be set only on a token that has
// none (errExternalIDTaken). A patch that changes nothing returns the token as it
// is, without a commit. The token returned carries its ETag.
func (s *store) Patch(sid, ifMatch string, patch map[string]json.RawMessage, now time.Time) (backend.Token, error) {
	var out backend.Token
	err := s.transact(sid, func() (*staged, error) {
		current, ok := s.tokens[sid]
		if !ok {
			return nil, errNotFound
		}
		if ifMatch != "" && !etagMatches(ifMatch, current.etag()) {
			return nil, errStale
		}
		next, errs := patched(current, patch)
		if errs = append(errs, validateToken(&next.Token, s.catalog)...); len(errs) > 0 {
			return nil, &invalidError{errs}
		}
		// Another claimant adopted the token first: a conflict with its state, not
		// an invalid value.
		if current.ExternalID != "" && next.ExternalID != current.ExternalID {
			return nil, errExternalIDTaken
		}
		if tokenSettingsEqual(&next.Token, &current.Token) {
			out = current.version()
			return nil, nil
		}
		next.UpdatedAt = now.UTC()
		write, err := s.tokenWrite(&next, false)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errEncode, err)
		}
		out = next.version()
		return &staged{writes: []pendingWrite{write}, sid: sid, token: &next}, nil
	})
	if err != nil {
		return backend.Token{}, err
	}
	return out, nil
}

// Delete removes the token sid for good.
func (s *store) Delete(sid string) error {
	return s.transact(sid, func() (*staged, error) {
		rec, ok := s.tokens[sid]
		if !ok {
			return nil, errNotFound
		}
		gone := *rec
		write, err := s.tokenWrite(&gone, true) // a deletion has no body to encode
		return &staged{writes: []pendingWrite{write}, sid: sid}, err
	})
}

// Get returns the token sid with its ETag.
func (s *store) Get(sid string) (backend.Token, error) {
	rec, err := s.lookup(sid)
	if err != nil {
		return backend.Token{}, err
	}
	return rec.version(), nil
}

// Credentials returns the account SID, auth token and generation of the token sid.
func (s *store) Credentials(sid string) (Credentials, error) {
	rec, err := s.lookup(sid)
	if err != nil {
		return Credentials{}, err
	}
	return rec.credentials(), nil
}

// Verify checks a data-plane caller: the token sid must exist, be enabled and have
// authToken (errBadCredentials), and hold scope unless it is empty (errScopeNotHeld).
func (s *store) Verify(sid, authToken, scope string) (backend.Token, error) {
	rec, err := s.lookup(sid)
	if err != nil || subtle.ConstantTimeCompare([]byte(authToken), []byte(rec.AuthToken)) != 1 || rec.State != backend.StateEnabled {
		return backend.Token{}, errBadCredentials
	}
	if scope != "" && !slices.Contains(rec.Scopes, scope) {
		return backend.Token{}, errScopeNotHeld
	}
	return rec.Token, nil
}

// List returns the tokens that carry externalID, or every token when it is empty,
// ordered by SID. A listed token carries no ETag.
func (s *store) List(externalID string) []backend.Token {
	items := s.collect(externalID)
	slices.SortFunc(items, func(a, b backend.Token) int { return strings.Compare(a.SID, b.SID) })
	return items
}

// Unclaimed lists the tokens without an external id, by SID.
func (s *store) Unclaimed() []backend.Token {
	return slices.DeleteFunc(s.List(""), func(t backend.Token) bool { return t.ExternalID != "" })
}

func (s *store) collect(externalID string) []backend.Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	items := []backend.Token{}
	if externalID != "" {
		for sid := range s.byExternalID[externalID] {
			items = append(items, s.tokens[sid].Token)
		}
		return items
	}
	for _, rec := range s.tokens {
		items = append(items, rec.Token)
	}
	return items
}

// lookup returns a copy of the token sid's record. Stored records are never changed
// in place (a change stores a new one), so the copy may share their slices.
func (s *store) lookup(sid string) (record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.tokens[sid]
	if !ok {
		return record{}, errNotFound
	}
	return *rec, nil
}

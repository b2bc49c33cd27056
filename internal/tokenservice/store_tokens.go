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
)

// Errors of the store's methods; the handlers map each to its problem response.
var (
	errNotFound       = errors.New("no token has this SID")
	errStale          = errors.New("the token changed since the given ETag")
	errInFlight       = errors.New("a request with this Idempotency-Key is still in flight")
	errKeyReused      = errors.New("this Idempotency-Key was used with another request body")
	errBadCredentials = errors.New("the credentials are not valid")
	errScopeNotHeld   = errors.New("the token does not hold the requested scope")
	// errEncode wraps a token that could not be encoded; nothing was changed.
	errEncode = errors.New("encode token")
	// errCommit wraps a commit that failed; memory already holds the change.
	errCommit = errors.New("commit")
)

// invalidError lists the fields that make a create or a patch invalid.
type invalidError struct{ fields []FieldError }

func (e *invalidError) Error() string { return fmt.Sprintf("%d invalid fields", len(e.fields)) }

// tokenVersion is a token as of one revision, and that revision's ETag.
type tokenVersion struct {
	Token Token
	ETag  string
}

func (r *record) version() tokenVersion { return tokenVersion{Token: r.Token, ETag: r.etag()} }

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
func (s *store) Create(key string, req createRequest, now time.Time) (replayable, error) {
	return s.idempotent("create\x00"+key, bodyHash(req), now, http.StatusCreated,
		func(now time.Time) (*record, any, error) {
			t := req.token(s.catalog.LatestAPIVersion, now)
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
	return s.idempotent("reset\x00"+sid+"\x00"+key, hash, now, http.StatusOK,
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

// idempotent runs a create or reset under its idempotency key. A record of the key
// younger than IdempotencyTTL answers instead of change: errInFlight until its answer
// is durable, errKeyReused when it was made for another body hash, else its answer
// again. Otherwise change (called under mu, with now in UTC) returns the token to store
// and the response to record; both are committed, and the record stays in flight
// until the commit returns.
func (s *store) idempotent(key, hash string, now time.Time, status int,
	change func(now time.Time) (*record, any, error)) (replayable, error) {
	var res replayable
	var idem *idempotencyRecord
	err := s.transact(func() ([]pendingWrite, error) {
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
		s.putToken(rec)
		idem = &idempotencyRecord{BodyHash: hash, Status: status, Body: body, CreatedAt: stamp, inFlight: true}
		s.idempotency[key] = idem
		idemWrite, _ := idempotencyWrite(key, idem)
		res = replayable{Status: status, Body: body, SID: rec.SID, ETag: rec.etag()}
		return []pendingWrite{tokenWrite, idemWrite}, nil
	})
	if idem != nil {
		s.settle(idem)
	}
	return res, err
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

// settle ends an idempotency record's flight: its answer is durable, or its commit
// failed and it is as durable as it will be.
func (s *store) settle(idem *idempotencyRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	idem.inFlight = false
}

func bodyHash(v any) string {
	canonical, _ := json.Marshal(v)
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:])
}

// Patch applies a JSON merge patch to the token sid. A non-empty ifMatch must name
// its current ETag (errStale). A patch that changes nothing returns the token as it
// is, without a commit.
func (s *store) Patch(sid, ifMatch string, patch map[string]json.RawMessage, now time.Time) (tokenVersion, error) {
	var out tokenVersion
	err := s.transact(func() ([]pendingWrite, error) {
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
		if tokenSettingsEqual(&next.Token, &current.Token) {
			out = current.version()
			return nil, nil
		}
		next.UpdatedAt = now.UTC()
		write, err := s.tokenWrite(&next, false)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errCommit, err)
		}
		s.putToken(&next)
		out = next.version()
		return []pendingWrite{write}, nil
	})
	return out, err
}

// Delete removes the token sid for good.
func (s *store) Delete(sid string) error {
	return s.transact(func() ([]pendingWrite, error) {
		rec, ok := s.tokens[sid]
		if !ok {
			return nil, errNotFound
		}
		s.removeToken(rec)
		gone := *rec
		write, err := s.tokenWrite(&gone, true) // a deletion has no body to encode
		return []pendingWrite{write}, err
	})
}

// transact runs stage under mu, then commits the writes it returns once mu is
// released, so that bolt's Batch can fold concurrent commits into one fsync.
func (s *store) transact(stage func() ([]pendingWrite, error)) error {
	writes, err := s.locked(stage)
	if err != nil {
		return err
	}
	if err := s.commit(writes...); err != nil {
		return fmt.Errorf("%w: %w", errCommit, err)
	}
	return nil
}

func (s *store) locked(stage func() ([]pendingWrite, error)) ([]pendingWrite, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return stage()
}

// Get returns the token sid.
func (s *store) Get(sid string) (tokenVersion, error) {
	rec, err := s.lookup(sid)
	if err != nil {
		return tokenVersion{}, err
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
func (s *store) Verify(sid, authToken, scope string) (Token, error) {
	rec, err := s.lookup(sid)
	if err != nil || subtle.ConstantTimeCompare([]byte(authToken), []byte(rec.AuthToken)) != 1 || rec.State != StateEnabled {
		return Token{}, errBadCredentials
	}
	if scope != "" && !slices.Contains(rec.Scopes, scope) {
		return Token{}, errScopeNotHeld
	}
	return rec.Token, nil
}

// List returns the tokens that carry externalID, or every token when it is empty,
// ordered by SID.
func (s *store) List(externalID string) []Token {
	items := s.collect(externalID)
	slices.SortFunc(items, func(a, b Token) int { return strings.Compare(a.SID, b.SID) })
	return items
}

func (s *store) collect(externalID string) []Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	items := []Token{}
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

package tokenservice

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
)

func newSID() string       { return "TK" + randomHex(16) }
func newAuthToken() string { return randomHex(20) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b)
}

// readBody reads a request body within the size limit.
func readBody(r *http.Request) ([]byte, *Problem) {
	body, err := io.ReadAll(r.Body)
	if err == nil {
		return body, nil
	}
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return nil, problem(http.StatusRequestEntityTooLarge, ProblemTooLarge, fmt.Sprintf("The body exceeds %d bytes.", MaxBodyBytes))
	}
	return nil, problem(http.StatusBadRequest, ProblemMalformed, "The body could not be read.")
}

// decodeStrict decodes a JSON object and rejects unknown fields and trailing data.
func decodeStrict(body []byte, v any) *Problem {
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &Problem{Type: ProblemMalformed, Title: "The body is not a valid JSON request.", Status: http.StatusBadRequest, Detail: jsonErrorDetail(err)}
	}
	if dec.More() {
		return problem(http.StatusBadRequest, ProblemMalformed, "The body holds more than one JSON value.")
	}
	return nil
}

// jsonErrorDetail describes a decoding error without quoting the input, which may
// hold anything the client sent.
func jsonErrorDetail(err error) string {
	if e, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		return fmt.Sprintf("field %q must be of type %s", e.Field, e.Type)
	}
	if _, ok := errors.AsType[*json.SyntaxError](err); ok {
		return "malformed JSON"
	}
	if strings.HasPrefix(err.Error(), "json: unknown field ") {
		return err.Error()
	}
	return "malformed JSON"
}

func bodyHash(v any) string {
	canonical, _ := json.Marshal(v)
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:])
}

// replay answers a request whose Idempotency-Key is already known, or returns false
// when the key is new. The caller holds the store lock.
func (s *Server) replay(w http.ResponseWriter, key, hash string) bool {
	rec, ok := s.store.idempotency[key]
	if !ok || s.now().Sub(rec.CreatedAt) > IdempotencyTTL {
		return false
	}
	switch {
	case rec.inFlight:
		writeProblem(w, problem(http.StatusConflict, ProblemIdempotencyBusy, "A request with this Idempotency-Key is still in flight."))
	case rec.BodyHash != hash:
		writeProblem(w, problem(http.StatusUnprocessableEntity, ProblemIdempotencyReused, "This Idempotency-Key was used with another request body."))
	default:
		writeRawJSON(w, rec.Status, rec.Body)
	}
	return true
}

// finish makes a change durable, then sends its response. The idempotency record
// stays in flight until then, so that a concurrent replay gets 409, not a response
// that a crash could still take back.
func (s *Server) finish(w http.ResponseWriter, idem *idempotencyRecord, writes ...pendingWrite) {
	err := s.store.commit(writes...)
	s.store.mu.Lock()
	idem.inFlight = false
	s.store.mu.Unlock()
	if err != nil {
		s.log.Error("commit failed", "error", err.Error())
		writeProblem(w, problem(http.StatusInternalServerError, ProblemInternal, "The change could not be stored."))
		return
	}
	writeRawJSON(w, idem.Status, idem.Body)
}

func idempotencyKey(w http.ResponseWriter, r *http.Request) (string, bool) {
	key := r.Header.Get("Idempotency-Key")
	if key == "" || len(key) > 255 {
		writeProblem(w, problem(http.StatusBadRequest, ProblemIdempotencyMissing, "An Idempotency-Key header of 1 to 255 characters is required."))
		return "", false
	}
	return key, true
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	key, ok := idempotencyKey(w, r)
	if !ok {
		return
	}
	body, p := readBody(r)
	if p != nil {
		writeProblem(w, p)
		return
	}
	var req createRequest
	if p := decodeStrict(body, &req); p != nil {
		writeProblem(w, p)
		return
	}
	hash := bodyHash(req)
	idemKey := "create\x00" + key

	s.store.mu.Lock()
	if s.replay(w, idemKey, hash) {
		s.store.mu.Unlock()
		return
	}
	now := s.now().UTC()
	t := Token{
		SID: newSID(), ExternalID: req.ExternalID, Name: req.Name, Description: req.Description,
		APIVersion: s.catalog.LatestAPIVersion, PrimaryContact: req.PrimaryContact,
		DeveloperEmails: normalizeSet(req.DeveloperEmails), Scopes: normalizeSet(req.Scopes),
		State: req.State, Generation: 1, CreatedAt: now, UpdatedAt: now,
	}
	if req.APIVersion != nil {
		t.APIVersion = *req.APIVersion
	}
	if t.State == "" {
		t.State = StateEnabled
	}
	if errs := validateToken(&t, s.catalog); len(errs) > 0 {
		s.store.mu.Unlock()
		writeProblem(w, invalid(errs...))
		return
	}
	rec := &record{Token: t, AuthToken: newAuthToken()}
	s.store.putToken(rec)
	tokenWrite, err := s.store.tokenWrite(rec, false)
	response, _ := json.Marshal(createdToken{Token: rec.Token, AuthToken: rec.AuthToken})
	idem := &idempotencyRecord{BodyHash: hash, Status: http.StatusCreated, Body: response, CreatedAt: now, inFlight: true}
	s.store.idempotency[idemKey] = idem
	s.store.mu.Unlock()
	if err != nil {
		writeProblem(w, problem(http.StatusInternalServerError, ProblemInternal, "The token could not be encoded."))
		return
	}
	idemWrite, _ := idempotencyWrite(idemKey, idem)
	w.Header().Set("Location", "/v1/tokens/"+rec.SID)
	w.Header().Set("ETag", rec.etag())
	w.Header().Set("Cache-Control", "no-store")
	s.finish(w, idem, tokenWrite, idemWrite)
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	externalID := r.URL.Query().Get("externalId")
	s.store.mu.Lock()
	items := []Token{}
	if externalID != "" {
		for sid := range s.store.byExternalID[externalID] {
			items = append(items, s.store.tokens[sid].Token)
		}
	} else {
		for _, rec := range s.store.tokens {
			items = append(items, rec.Token)
		}
	}
	s.store.mu.Unlock()
	slices.SortFunc(items, func(a, b Token) int { return strings.Compare(a.SID, b.SID) })
	writeJSON(w, map[string][]Token{"items": items})
}

// lookup returns a copy of the token's record, or writes 404.
func (s *Server) lookup(w http.ResponseWriter, sid string) (record, bool) {
	s.store.mu.Lock()
	rec, ok := s.store.tokens[sid]
	var out record
	if ok {
		out = *rec
	}
	s.store.mu.Unlock()
	if !ok {
		writeProblem(w, problem(http.StatusNotFound, ProblemNotFound, "No token has this SID."))
	}
	return out, ok
}

func (s *Server) getToken(w http.ResponseWriter, r *http.Request) {
	rec, ok := s.lookup(w, r.PathValue("sid"))
	if !ok {
		return
	}
	etag := rec.etag()
	w.Header().Set("ETag", etag)
	if etagMatches(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	writeJSON(w, rec.Token)
}

// etagMatches reports whether an If-None-Match or If-Match header names etag.
func etagMatches(header, etag string) bool {
	for candidate := range strings.SplitSeq(header, ",") {
		candidate = strings.TrimPrefix(strings.TrimSpace(candidate), "W/")
		if candidate == "*" || candidate == etag {
			return true
		}
	}
	return false
}

func (s *Server) patchToken(w http.ResponseWriter, r *http.Request) {
	body, p := readBody(r)
	if p != nil {
		writeProblem(w, p)
		return
	}
	var patch map[string]json.RawMessage
	if err := json.Unmarshal(body, &patch); err != nil || patch == nil {
		writeProblem(w, problem(http.StatusBadRequest, ProblemMalformed, "The body must be a JSON merge patch object."))
		return
	}

	s.store.mu.Lock()
	current, ok := s.store.tokens[r.PathValue("sid")]
	if !ok {
		s.store.mu.Unlock()
		writeProblem(w, problem(http.StatusNotFound, ProblemNotFound, "No token has this SID."))
		return
	}
	if ifMatch := r.Header.Get("If-Match"); ifMatch != "" && !etagMatches(ifMatch, current.etag()) {
		s.store.mu.Unlock()
		writeProblem(w, problem(http.StatusPreconditionFailed, ProblemPrecondition, "The token changed since the given ETag."))
		return
	}
	next := *current
	next.DeveloperEmails = slices.Clone(current.DeveloperEmails)
	next.Scopes = slices.Clone(current.Scopes)
	errs := applyMergePatch(&next.Token, patch)
	if next.APIVersion < current.APIVersion {
		errs = append(errs, FieldError{Field: "apiVersion", Detail: fmt.Sprintf("may only rise: %d is below the current %d", next.APIVersion, current.APIVersion)})
	}
	errs = append(errs, validateToken(&next.Token, s.catalog)...)
	if len(errs) > 0 {
		s.store.mu.Unlock()
		writeProblem(w, invalid(errs...))
		return
	}
	if tokenSettingsEqual(&next.Token, &current.Token) {
		s.store.mu.Unlock()
		w.Header().Set("ETag", current.etag())
		writeJSON(w, current.Token)
		return
	}
	next.UpdatedAt = s.now().UTC()
	write, err := s.store.tokenWrite(&next, false)
	s.store.putToken(&next)
	s.store.mu.Unlock()
	if err == nil {
		err = s.store.commit(write)
	}
	if err != nil {
		writeProblem(w, problem(http.StatusInternalServerError, ProblemInternal, "The change could not be stored."))
		return
	}
	w.Header().Set("ETag", next.etag())
	writeJSON(w, next.Token)
}

// applyMergePatch applies the settable members of an RFC 7396 merge patch to t.
// null clears the optional fields; the required ones cannot be cleared.
func applyMergePatch(t *Token, patch map[string]json.RawMessage) []FieldError {
	var errs []FieldError
	set := func(field string, raw json.RawMessage, dst any, clearable bool) {
		if string(raw) == "null" {
			if !clearable {
				errs = append(errs, FieldError{Field: field, Detail: "is required and cannot be null"})
			}
			return
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			errs = append(errs, FieldError{Field: field, Detail: "has the wrong type"})
		}
	}
	for field, raw := range patch {
		switch field {
		case "name":
			set(field, raw, &t.Name, false)
		case "description":
			t.Description = ""
			set(field, raw, &t.Description, true)
		case "apiVersion":
			set(field, raw, &t.APIVersion, false)
		case "primaryContact":
			set(field, raw, &t.PrimaryContact, false)
		case "developerEmails":
			t.DeveloperEmails = nil
			set(field, raw, &t.DeveloperEmails, true)
			t.DeveloperEmails = normalizeSet(t.DeveloperEmails)
		case "scopes":
			t.Scopes = nil
			set(field, raw, &t.Scopes, true)
			t.Scopes = normalizeSet(t.Scopes)
		case "state":
			set(field, raw, &t.State, false)
		default:
			errs = append(errs, FieldError{Field: field, Detail: "is not a field that can be changed"})
		}
	}
	slices.SortFunc(errs, func(a, b FieldError) int { return strings.Compare(a.Field, b.Field) })
	return errs
}

func tokenSettingsEqual(a, b *Token) bool {
	return a.Name == b.Name && a.Description == b.Description && a.APIVersion == b.APIVersion &&
		a.PrimaryContact == b.PrimaryContact && a.State == b.State &&
		slices.Equal(a.DeveloperEmails, b.DeveloperEmails) && slices.Equal(a.Scopes, b.Scopes)
}

func (s *Server) deleteToken(w http.ResponseWriter, r *http.Request) {
	s.store.mu.Lock()
	rec, ok := s.store.tokens[r.PathValue("sid")]
	if !ok {
		s.store.mu.Unlock()
		writeProblem(w, problem(http.StatusNotFound, ProblemNotFound, "No token has this SID."))
		return
	}
	s.store.removeToken(rec)
	gone := *rec
	write, err := s.store.tokenWrite(&gone, true)
	s.store.mu.Unlock()
	if err == nil {
		err = s.store.commit(write)
	}
	if err != nil {
		writeProblem(w, problem(http.StatusInternalServerError, ProblemInternal, "The change could not be stored."))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) getCredentials(w http.ResponseWriter, r *http.Request) {
	rec, ok := s.lookup(w, r.PathValue("sid"))
	if !ok {
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, Credentials{AccountSID: rec.SID, AuthToken: rec.AuthToken, Generation: rec.Generation})
}

func (s *Server) resetToken(w http.ResponseWriter, r *http.Request) {
	key, ok := idempotencyKey(w, r)
	if !ok {
		return
	}
	body, p := readBody(r)
	if p != nil {
		writeProblem(w, p)
		return
	}
	if trimmed := strings.TrimSpace(string(body)); trimmed != "" && trimmed != "{}" {
		writeProblem(w, problem(http.StatusBadRequest, ProblemMalformed, "A reset takes no body."))
		return
	}
	sid := r.PathValue("sid")
	idemKey := "reset\x00" + sid + "\x00" + key
	const hash = "reset"

	s.store.mu.Lock()
	if s.replay(w, idemKey, hash) {
		s.store.mu.Unlock()
		return
	}
	current, ok := s.store.tokens[sid]
	if !ok {
		s.store.mu.Unlock()
		writeProblem(w, problem(http.StatusNotFound, ProblemNotFound, "No token has this SID."))
		return
	}
	next := *current
	next.AuthToken = newAuthToken()
	next.Generation++
	next.UpdatedAt = s.now().UTC()
	write, err := s.store.tokenWrite(&next, false)
	s.store.putToken(&next)
	response, _ := json.Marshal(Credentials{AccountSID: next.SID, AuthToken: next.AuthToken, Generation: next.Generation})
	idem := &idempotencyRecord{BodyHash: hash, Status: http.StatusOK, Body: response, CreatedAt: next.UpdatedAt, inFlight: true}
	s.store.idempotency[idemKey] = idem
	s.store.mu.Unlock()
	if err != nil {
		writeProblem(w, problem(http.StatusInternalServerError, ProblemInternal, "The token could not be encoded."))
		return
	}
	idemWrite, _ := idempotencyWrite(idemKey, idem)
	w.Header().Set("ETag", next.etag())
	w.Header().Set("Cache-Control", "no-store")
	s.finish(w, idem, write, idemWrite)
}

// verify is the data-plane check: the token's SID and auth token as HTTP Basic
// credentials, and optionally a scope that the token must hold.
func (s *Server) verify(w http.ResponseWriter, r *http.Request) {
	sid, authToken, ok := r.BasicAuth()
	unauthorized := func() {
		w.Header().Set("WWW-Authenticate", `Basic realm="tokenservice"`)
		writeProblem(w, problem(http.StatusUnauthorized, ProblemUnauthorized, "The credentials are not valid."))
	}
	if !ok {
		unauthorized()
		return
	}
	s.store.mu.Lock()
	rec, found := s.store.tokens[sid]
	var t record
	if found {
		t = *rec
	}
	s.store.mu.Unlock()
	if !found || subtle.ConstantTimeCompare([]byte(authToken), []byte(t.AuthToken)) != 1 || t.State != StateEnabled {
		unauthorized()
		return
	}
	if scope := r.URL.Query().Get("scope"); scope != "" && !slices.Contains(t.Scopes, scope) {
		writeProblem(w, problem(http.StatusForbidden, ProblemForbiddenScope, "The token does not hold the requested scope."))
		return
	}
	writeJSON(w, map[string]any{"sid": t.SID, "scopes": t.Scopes})
}

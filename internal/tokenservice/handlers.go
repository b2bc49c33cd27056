package tokenservice

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"

	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// The handlers decode a request, make one call to the store and write its answer;
// the store owns the lock, the maps and the database.

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	key, body, ok := idempotentRequest(w, r)
	if !ok {
		return
	}
	var req backend.CreateRequest
	if p := decodeStrict(body, &req); p != nil {
		writeProblem(w, p)
		return
	}
	res, err := s.store.Create(key, req, s.now())
	if res.Fresh() {
		w.Header().Set("Location", "/v1/tokens/"+res.SID)
	}
	s.writeReplayable(w, res, err)
}

// listTokens finds tokens by externalId; an explicitly empty externalId finds the
// tokens no one has claimed (kubectl apitoken import --unmanaged).
func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Has("externalId") && q.Get("externalId") == "" {
		writeJSON(w, map[string][]backend.Token{"items": s.store.Unclaimed()})
		return
	}
	writeJSON(w, map[string][]backend.Token{"items": s.store.List(q.Get("externalId"))})
}

func (s *Server) getToken(w http.ResponseWriter, r *http.Request) {
	tok, err := s.store.Get(r.PathValue("sid"))
	if err != nil {
		s.writeError(w, err)
		return
	}
	w.Header().Set("ETag", tok.ETag)
	if etagMatches(r.Header.Get("If-None-Match"), tok.ETag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	writeJSON(w, tok)
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
	tok, err := s.store.Patch(r.PathValue("sid"), r.Header.Get("If-Match"), patch, s.now())
	if err != nil {
		s.writeError(w, err)
		return
	}
	w.Header().Set("ETag", tok.ETag)
	writeJSON(w, tok)
}

func (s *Server) deleteToken(w http.ResponseWriter, r *http.Request) {
	if err := s.store.Delete(r.PathValue("sid")); err != nil {
		s.writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) getCredentials(w http.ResponseWriter, r *http.Request) {
	creds, err := s.store.Credentials(r.PathValue("sid"))
	if err != nil {
		s.writeError(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, creds)
}

func (s *Server) resetToken(w http.ResponseWriter, r *http.Request) {
	key, body, ok := idempotentRequest(w, r)
	if !ok {
		return
	}
	if trimmed := strings.TrimSpace(string(body)); trimmed != "" && trimmed != "{}" {
		writeProblem(w, problem(http.StatusBadRequest, ProblemMalformed, "A reset takes no body."))
		return
	}
	res, err := s.store.Reset(r.PathValue("sid"), key, s.now())
	s.writeReplayable(w, res, err)
}

// verify is the data-plane check: the token's SID and auth token as HTTP Basic
// credentials, and optionally a scope that the token must hold. The rate limit is
// the SID's once the credentials are good, so wrong ones cannot spend its budget.
func (s *Server) verify(w http.ResponseWriter, r *http.Request) {
	t, err := backend.Token{}, errBadCredentials
	sid, authToken, ok := r.BasicAuth()
	if ok {
		t, err = s.store.Verify(sid, authToken, r.URL.Query().Get("scope"))
	}
	client := "" // unauthenticated
	if !errors.Is(err, errBadCredentials) {
		client = "sid:" + sid
	}
	if !s.admit(w, client) {
		return
	}
	if err != nil {
		if errors.Is(err, errBadCredentials) {
			w.Header().Set("WWW-Authenticate", `Basic realm="tokenservice"`)
		}
		s.writeError(w, err)
		return
	}
	writeJSON(w, map[string]any{"sid": t.SID, "scopes": t.Scopes})
}

// writeReplayable answers a create or reset. A fresh answer carries the token's ETag
// and no-store; a replay sends the recorded body alone.
func (s *Server) writeReplayable(w http.ResponseWriter, res replayable, err error) {
	if err != nil {
		s.writeError(w, err)
		return
	}
	if res.Fresh() {
		w.Header().Set("ETag", res.ETag)
		w.Header().Set("Cache-Control", "no-store")
	}
	writeRawJSON(w, res.Status, res.Body)
}

// storeProblems are the problem responses to the store's errors.
var storeProblems = []struct {
	err error
	*Problem
}{
	{errNotFound, problem(http.StatusNotFound, ProblemNotFound, "No token has this SID.")},
	{errStale, problem(http.StatusPreconditionFailed, ProblemPrecondition, "The token changed since the given ETag.")},
	{errExternalIDTaken, problem(http.StatusConflict, ProblemExternalIDTaken, "The token already has another external id.")},
	{errInFlight, problem(http.StatusConflict, ProblemIdempotencyBusy, "A request with this Idempotency-Key is still in flight.")},
	{errKeyReused, problem(http.StatusUnprocessableEntity, ProblemIdempotencyReused, "This Idempotency-Key was used with another request body.")},
	{errBadCredentials, problem(http.StatusUnauthorized, ProblemUnauthorized, "The credentials are not valid.")},
	{errScopeNotHeld, problem(http.StatusForbidden, ProblemForbiddenScope, "The token does not hold the requested scope.")},
	{errEncode, problem(http.StatusInternalServerError, ProblemInternal, "The token could not be encoded.")},
}

// writeError answers with the problem that err from the store stands for; anything
// else, a failed commit among them, is a 500.
func (s *Server) writeError(w http.ResponseWriter, err error) {
	if e, ok := errors.AsType[*invalidError](err); ok {
		writeProblem(w, invalid(e.fields...))
		return
	}
	for _, p := range storeProblems {
		if errors.Is(err, p.err) {
			writeProblem(w, p.Problem)
			return
		}
	}
	s.log.Error("commit failed", "error", err.Error())
	writeProblem(w, problem(http.StatusInternalServerError, ProblemInternal, "The change could not be stored."))
}

// idempotentRequest reads the Idempotency-Key and the body of a create or reset, or
// answers 400 or 413.
func idempotentRequest(w http.ResponseWriter, r *http.Request) (key string, body []byte, ok bool) {
	key = r.Header.Get("Idempotency-Key")
	if key == "" || len(key) > 255 {
		writeProblem(w, problem(http.StatusBadRequest, ProblemIdempotencyMissing, "An Idempotency-Key header of 1 to 255 characters is required."))
		return "", nil, false
	}
	body, p := readBody(r)
	if p != nil {
		writeProblem(w, p)
		return "", nil, false
	}
	return key, body, true
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
		if e.Field == "" {
			return "the body must be a JSON object"
		}
		return fmt.Sprintf("field %q must be of type %s", e.Field, jsonTypeName(e.Type))
	}
	if _, ok := errors.AsType[*json.SyntaxError](err); ok {
		return "malformed JSON"
	}
	if strings.HasPrefix(err.Error(), "json: unknown field ") {
		return err.Error()
	}
	return "malformed JSON"
}

// jsonTypeName names a field's type for a client: a Go type defined in a package
// (such as backend.State) by its kind (string), so that a detail does not name
// the server's Go types.
func jsonTypeName(t reflect.Type) string {
	if t.PkgPath() != "" {
		return t.Kind().String()
	}
	return t.String()
}

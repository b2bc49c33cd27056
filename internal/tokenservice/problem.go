package tokenservice

import (
	"encoding/json"
	"net/http"

	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// ProblemTypeBase prefixes every problem type URI this server returns.
const ProblemTypeBase = "https://apitoken.dev/problems/"

// Stable problem types (RFC 9457 "type" members), one per failure a client may branch on.
const (
	ProblemMalformed          = ProblemTypeBase + "malformed-request"
	ProblemIdempotencyMissing = ProblemTypeBase + "idempotency-key-missing"
	ProblemIdempotencyReused  = ProblemTypeBase + "idempotency-key-reused"
	ProblemIdempotencyBusy    = ProblemTypeBase + "idempotency-key-in-flight"
	ProblemUnauthorized       = ProblemTypeBase + "unauthorized"
	ProblemForbiddenScope     = ProblemTypeBase + "scope-not-granted"
	ProblemNotFound           = ProblemTypeBase + "not-found"
	ProblemPrecondition       = ProblemTypeBase + "precondition-failed"
	ProblemExternalIDTaken    = ProblemTypeBase + "external-id-taken"
	ProblemTooLarge           = ProblemTypeBase + "body-too-large"
	ProblemInvalid            = ProblemTypeBase + "validation-failed"
	ProblemRateLimited        = ProblemTypeBase + "rate-limited"
	ProblemInternal           = ProblemTypeBase + "internal"
)

// Problem is an RFC 9457 problem document. It never carries a secret: details are
// written by this server from fixed strings and the names of offending fields.
type Problem struct {
	Type   string               `json:"type"`
	Title  string               `json:"title"`
	Status int                  `json:"status"`
	Detail string               `json:"detail,omitempty"`
	Errors []backend.FieldError `json:"errors,omitempty"`
}

func (p *Problem) Error() string { return p.Title }

func problem(status int, typ, title string) *Problem {
	return &Problem{Type: typ, Title: title, Status: status}
}

func invalid(errs ...backend.FieldError) *Problem {
	return &Problem{Type: ProblemInvalid, Title: "The request has invalid fields.", Status: http.StatusUnprocessableEntity, Errors: errs}
}

func writeProblem(w http.ResponseWriter, p *Problem) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// writeJSON answers 200 with v.
func writeJSON(w http.ResponseWriter, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeProblem(w, problem(http.StatusInternalServerError, ProblemInternal, "The response could not be encoded."))
		return
	}
	writeRawJSON(w, http.StatusOK, body)
}

func writeRawJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

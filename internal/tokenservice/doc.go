// Package tokenservice is the reference implementation of the Token Service API v1:
// tokens with an account SID and an auth token, created, changed, reset, disabled and
// deleted by an administrator, and checked by the data-plane verify call.
//
// The package owns three things:
//   - the HTTP API (server.go, handlers.go, problem.go, ratelimit.go): routing, the
//     admin key, the per-client rate limits (applied after authentication) and the
//     limit on failed admin-key authentications per client IP, the body limit and
//     the server's timeouts, request decoding and the responses, errors as
//     RFC 9457 problems;
//   - the durable store (store.go, store_tokens.go): tokens and 24 h idempotency records
//     in memory, written through to a bbolt file. Its methods are the only code that
//     takes the store's lock or touches its maps; each validates a change and returns
//     once it is committed, with typed errors that the handlers map to problems.
//     Readers see committed tokens only, and a failed commit leaves no trace, so a
//     retry acts afresh;
//   - the catalog (catalog.go) of API versions, scopes and contacts that tokens are
//     validated against, built in or loaded from a file.
//
// It is a standalone server that cmd/tokenservice runs and the tests start in process.
// It must not import anything of the operator: not controllers/, not api/, not test/.
// Of pkg/backend it uses only the wire types (Token, CreateRequest, Catalog,
// FieldError, NormalizeSet), so that the server and the operator's client encode the
// HTTP contract from one definition; the client still reaches it over HTTP only. Its
// tests may use pkg/conformance, the contract suite that runs against any
// implementation.
package tokenservice

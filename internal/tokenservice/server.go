package tokenservice

import (
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// Config configures a Server.
type Config struct {
	// AdminKey authorises management calls (Authorization: Bearer <AdminKey>).
	// Required; New takes any length (the tests' keys are short), the binary
	// refuses keys under 32 bytes.
	AdminKey string
	// DataPath is the database file; empty keeps everything in memory.
	DataPath string
	// Catalog is served by GET /v1/catalog and validates tokens. Zero means DemoCatalog.
	Catalog *Catalog
	// RateLimit is the number of requests per second served to each client (the admin
	// key, each account SID), counted once a request is authenticated; the requests
	// that fail authentication share ten times that. 0 means no limit.
	RateLimit float64
	// AuthFailureLimit is the number of failed admin-key authentications (missing
	// or wrong key) per second per client IP, after a burst of AuthFailureBurst;
	// beyond it the IP is answered 429 with Retry-After without its key being
	// checked. 0 means no limit; the binary's default is DefaultAuthFailureLimit.
	AuthFailureLimit float64
	// Logger receives one line per request; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Server serves the Token Service API.
type Server struct {
	adminKey []byte
	catalog  Catalog
	store    *store
	limits   *rateLimits
	// authFailures are the buckets of failed admin-key authentications by client
	// IP; nil means no limit.
	authFailures *limiters
	timeouts     timeouts
	log          *slog.Logger
	now          func() time.Time
	mux          *http.ServeMux
}

// New opens the store and builds the server. Close releases the database.
func New(cfg Config) (*Server, error) {
	if cfg.AdminKey == "" {
		return nil, errors.New("an admin key is required: set --admin-key-file or TOKENSERVICE_ADMIN_KEY")
	}
	s := &Server{
		adminKey: []byte(cfg.AdminKey),
		catalog:  DemoCatalog(),
		timeouts: defaultTimeouts,
		log:      cfg.Logger,
		now:      cfg.Now,
	}
	if cfg.Catalog != nil {
		if err := cfg.Catalog.Validate(); err != nil {
			return nil, err
		}
		s.catalog = *cfg.Catalog
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.limits = newRateLimits(cfg.RateLimit)
	s.authFailures = newAuthFailureLimits(cfg.AuthFailureLimit)
	st, err := openStore(cfg.DataPath, s.catalog, s.now())
	if err != nil {
		return nil, err
	}
	s.store = st
	s.routes()
	return s, nil
}

// timeouts bound each stage of a connection in the http.Server that HTTPServer
// builds, so that a slow or stalled client cannot hold connections and goroutines.
type timeouts struct {
	readHeader, read, write, idle time.Duration
}

// defaultTimeouts leave a well-behaved client ample time: a request is 1 MiB at most
// and every handler answers from memory or after one commit.
var defaultTimeouts = timeouts{readHeader: 10 * time.Second, read: 30 * time.Second, write: 30 * time.Second, idle: 120 * time.Second}

// HTTPServer returns an http.Server that serves s, with timeouts for reading the
// request headers (10s), the whole request (30s), writing the response (30s) and an
// idle keep-alive connection (120s).
func (s *Server) HTTPServer() *http.Server {
	return &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.timeouts.readHeader,
		ReadTimeout:       s.timeouts.read,
		WriteTimeout:      s.timeouts.write,
		IdleTimeout:       s.timeouts.idle,
	}
}

// Close closes the database.
func (s *Server) Close() error { return s.store.close() }

// ExpireIdempotencyRecords forgets replay records older than IdempotencyTTL; the
// binary calls it periodically.
func (s *Server) ExpireIdempotencyRecords() error { return s.store.expireIdempotency(s.now()) }

func (s *Server) routes() {
	mux := http.NewServeMux()
	admin := s.requireAdmin
	mux.Handle("GET /v1/catalog", admin(s.getCatalog))
	mux.Handle("POST /v1/tokens", admin(s.createToken))
	mux.Handle("GET /v1/tokens", admin(s.listTokens))
	mux.Handle("GET /v1/tokens/{sid}", admin(s.getToken))
	mux.Handle("PATCH /v1/tokens/{sid}", admin(s.patchToken))
	mux.Handle("DELETE /v1/tokens/{sid}", admin(s.deleteToken))
	mux.Handle("GET /v1/tokens/{sid}/credentials", admin(s.getCredentials))
	mux.Handle("POST /v1/tokens/{sid}/reset", admin(s.resetToken))
	mux.HandleFunc("GET /v1/verify", s.verify)
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		if s.admit(w, "") {
			writeProblem(w, problem(http.StatusNotFound, ProblemNotFound, "No such endpoint."))
		}
	})
	s.mux = mux
}

// ServeHTTP logs the request, applies the body size limit and dispatches; the
// handlers apply the rate limit once they know the client (ratelimit.go). Logs carry
// method, path, status and duration only: never headers or bodies, where the admin
// key and auth tokens travel.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := s.now()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		s.log.Info("request", "method", r.Method, "path", r.URL.Path, "status", rec.status,
			"duration", s.now().Sub(start).String())
	}()
	r.Body = http.MaxBytesReader(rec, r.Body, MaxBodyBytes)
	s.mux.ServeHTTP(rec, r)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

// requireAdmin serves next to the admin key only. An IP that has spent its failed
// authentications (ratelimit.go) is answered 429 before its key is checked.
func (s *Server) requireAdmin(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.authFailuresSpent(w, r) {
			return
		}
		key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(key), s.adminKey) != 1 {
			if s.spendAuthFailure(w, r) && s.admit(w, "") {
				w.Header().Set("WWW-Authenticate", `Bearer realm="tokenservice"`)
				writeProblem(w, problem(http.StatusUnauthorized, ProblemUnauthorized, "A valid admin key is required."))
			}
			return
		}
		if s.admit(w, adminClient) {
			next(w, r)
		}
	})
}

func (s *Server) getCatalog(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, s.catalog)
}

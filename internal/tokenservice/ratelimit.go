package tokenservice

import (
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// The rate limit is applied once a request is authenticated, with a budget per
// client: the admin key for management calls, each account SID for verify. A
// request that fails authentication spends no client's budget, so a flood of bad
// keys or credentials cannot starve the operator; such requests share one budget of
// their own, anonymousFactor times a client's, so that the flood is still bounded.
//
// Failed authentications of management calls (a missing or wrong admin key) are
// limited too, on by default in the binary: each client IP has a token bucket of
// AuthFailureBurst failures, refilled at Config.AuthFailureLimit per second. An IP
// whose bucket is empty is answered 429 with Retry-After before its key is looked
// at, so guessing the key goes no faster than the refill. A call with the right key
// spends nothing from the bucket; it is refused only while its IP's bucket is empty.
const (
	anonymousFactor = 10
	// maxIdleLimiters is how many limiters of one kind are kept before the idle ones
	// (full again) are forgotten; a forgotten one is recreated full, as it was.
	maxIdleLimiters = 10_000
	adminClient     = "admin" // the one admin key

	// AuthFailureBurst is how many failed admin-key authentications a client IP may
	// make in a row before Config.AuthFailureLimit applies (more if the limit per
	// second is higher).
	AuthFailureBurst = 10
	// DefaultAuthFailureLimit is the binary's --auth-failure-limit: failed admin-key
	// authentications per second per client IP, once the burst is spent.
	DefaultAuthFailureLimit = 1.0
)

// limiters are token buckets by key (a client, an IP), created full on first use.
type limiters struct {
	perSecond rate.Limit
	burst     int

	mu sync.Mutex
	m  map[string]*rate.Limiter
}

func newLimiters(perSecond float64, burst int) *limiters {
	return &limiters{perSecond: rate.Limit(perSecond), burst: burst, m: map[string]*rate.Limiter{}}
}

// get returns the limiter of key.
func (l *limiters) get(key string) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if lim, ok := l.m[key]; ok {
		return lim
	}
	if len(l.m) >= maxIdleLimiters {
		now := time.Now()
		for k, lim := range l.m {
			if lim.TokensAt(now) >= float64(l.burst) {
				delete(l.m, k)
			}
		}
	}
	lim := rate.NewLimiter(l.perSecond, l.burst)
	l.m[key] = lim
	return lim
}

// rateLimits holds the limiters; nil means no limit.
type rateLimits struct {
	anonymous *rate.Limiter
	clients   *limiters
}

func newRateLimits(perSecond float64) *rateLimits {
	if perSecond <= 0 {
		return nil
	}
	burst := max(1, int(math.Ceil(perSecond)))
	return &rateLimits{
		anonymous: rate.NewLimiter(rate.Limit(perSecond*anonymousFactor), burst*anonymousFactor),
		clients:   newLimiters(perSecond, burst),
	}
}

// newAuthFailureLimits returns the buckets of failed admin-key authentications per
// client IP; nil (no limit) when perSecond is 0 or less.
func newAuthFailureLimits(perSecond float64) *limiters {
	if perSecond <= 0 {
		return nil
	}
	return newLimiters(perSecond, max(AuthFailureBurst, int(math.Ceil(perSecond))))
}

// admit reports whether a request of client (empty: unauthenticated) is within its
// budget, and otherwise answers 429 with Retry-After.
func (s *Server) admit(w http.ResponseWriter, client string) bool {
	if s.limits == nil {
		return true
	}
	lim := s.limits.anonymous
	if client != "" {
		lim = s.limits.clients.get(client)
	}
	res := lim.Reserve()
	delay := res.Delay()
	if delay == 0 {
		return true
	}
	res.Cancel() // a refused request spends nothing
	tooMany(w, delay, "Too many requests; retry later.")
	return false
}

// authFailuresSpent answers 429 with Retry-After when the IP of r has no failed
// authentication left; it neither looks at the key nor spends anything.
func (s *Server) authFailuresSpent(w http.ResponseWriter, r *http.Request) bool {
	if s.authFailures == nil {
		return false
	}
	lim := s.authFailures.get(clientIP(r))
	tokens := lim.TokensAt(time.Now())
	if tokens >= 1 {
		return false
	}
	tooMany(w, time.Duration((1-tokens)/float64(lim.Limit())*float64(time.Second)), tooManyFailures)
	return true
}

// spendAuthFailure counts a failed authentication of the IP of r. It answers 429
// and reports false when a concurrent failure took the last one.
func (s *Server) spendAuthFailure(w http.ResponseWriter, r *http.Request) bool {
	if s.authFailures == nil {
		return true
	}
	res := s.authFailures.get(clientIP(r)).Reserve()
	if delay := res.Delay(); delay > 0 {
		res.Cancel()
		tooMany(w, delay, tooManyFailures)
		return false
	}
	return true
}

const tooManyFailures = "Too many failed authentications; retry later."

func tooMany(w http.ResponseWriter, delay time.Duration, title string) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(delay.Seconds())))))
	writeProblem(w, problem(http.StatusTooManyRequests, ProblemRateLimited, title))
}

// clientIP is the address the connection comes from. Forwarding headers are not
// trusted: a client could name any address in them.
func clientIP(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

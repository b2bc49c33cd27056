package tokenservice

import (
	"math"
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
const (
	anonymousFactor = 10
	// maxIdleLimiters is how many client limiters are kept before the idle ones
	// (full again) are forgotten; a forgotten one is recreated full, as it was.
	maxIdleLimiters = 10_000
	adminClient     = "admin" // the one admin key
)

// rateLimits holds the limiters; nil means no limit.
type rateLimits struct {
	perSecond rate.Limit
	burst     int
	anonymous *rate.Limiter

	mu      sync.Mutex
	clients map[string]*rate.Limiter
}

func newRateLimits(perSecond float64) *rateLimits {
	if perSecond <= 0 {
		return nil
	}
	burst := max(1, int(math.Ceil(perSecond)))
	return &rateLimits{
		perSecond: rate.Limit(perSecond),
		burst:     burst,
		anonymous: rate.NewLimiter(rate.Limit(perSecond*anonymousFactor), burst*anonymousFactor),
		clients:   map[string]*rate.Limiter{},
	}
}

// client returns the limiter of an authenticated client.
func (l *rateLimits) client(id string) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if lim, ok := l.clients[id]; ok {
		return lim
	}
	if len(l.clients) >= maxIdleLimiters {
		now := time.Now()
		for k, lim := range l.clients {
			if lim.TokensAt(now) >= float64(l.burst) {
				delete(l.clients, k)
			}
		}
	}
	lim := rate.NewLimiter(l.perSecond, l.burst)
	l.clients[id] = lim
	return lim
}

// admit reports whether a request of client (empty: unauthenticated) is within its
// budget, and otherwise answers 429 with Retry-After.
func (s *Server) admit(w http.ResponseWriter, client string) bool {
	if s.limits == nil {
		return true
	}
	lim := s.limits.anonymous
	if client != "" {
		lim = s.limits.client(client)
	}
	res := lim.Reserve()
	delay := res.Delay()
	if delay == 0 {
		return true
	}
	res.Cancel() // a refused request spends nothing
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(delay.Seconds())))))
	writeProblem(w, problem(http.StatusTooManyRequests, ProblemRateLimited, "Too many requests; retry later."))
	return false
}

package conformance_test

import (
	"os"
	"testing"

	"github.com/apitoken-dev/apitoken-operator/pkg/conformance"
)

// TestExternalImplementation runs the suite against any running implementation:
//
//	CONFORMANCE_URL=http://127.0.0.1:8080 CONFORMANCE_ADMIN_KEY=... go test ./pkg/conformance/
//
// CONFORMANCE_RATE_LIMITED_URL optionally names a rate-limited instance for the 429 case.
// make test runs the suite against tokenservice in-process and as a binary instead.
func TestExternalImplementation(t *testing.T) {
	url := os.Getenv("CONFORMANCE_URL")
	if url == "" {
		t.Skip("CONFORMANCE_URL is not set")
	}
	conformance.Run(t, conformance.Target{
		URL:            url,
		AdminKey:       os.Getenv("CONFORMANCE_ADMIN_KEY"),
		RateLimitedURL: os.Getenv("CONFORMANCE_RATE_LIMITED_URL"),
	})
}

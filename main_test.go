package main

import (
	"context"
	"crypto/tls"
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"
)

func TestCredentialsNamespace(t *testing.T) {
	tests := map[string]struct {
		flag, podNamespace string
		want               string
		wantErr            string
	}{
		"the Pod's namespace":             {podNamespace: "apitoken-system", want: "apitoken-system"},
		"the flag wins over the Pod's":    {flag: "ops", podNamespace: "apitoken-system", want: "ops"},
		"the flag outside a Pod":          {flag: "ops", want: "ops"},
		"neither: refuse to start":        {wantErr: "no credentials namespace: set --credentials-namespace, or POD_NAMESPACE"},
		"not a namespace name":            {flag: "Ops/Team", wantErr: `credentials namespace "Ops/Team" is not a namespace name`},
		"an empty flag is no flag at all": {flag: "", podNamespace: "apitoken-system", want: "apitoken-system"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := credentialsNamespace(tc.flag, tc.podNamespace)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func parse(t *testing.T, args ...string) *flags {
	t.Helper()
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	f := bindFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestMetricsOptions(t *testing.T) {
	t.Run("secure by default, self-signed, HTTP/1.1 only", func(t *testing.T) {
		o, w, err := metricsOptions(parse(t))
		if err != nil {
			t.Fatal(err)
		}
		if !o.SecureServing || o.FilterProvider == nil || w != nil || o.BindAddress != ":8443" {
			t.Errorf("secure %t, filter %t, cert watcher %v, address %q: want HTTPS with the authn/authz filter on :8443",
				o.SecureServing, o.FilterProvider != nil, w, o.BindAddress)
		}
		if c := tlsConfig(o.TLSOpts); len(c.NextProtos) != 1 || c.NextProtos[0] != "http/1.1" {
			t.Errorf("NextProtos %v, want HTTP/1.1 only", c.NextProtos)
		}
	})
	t.Run("--metrics-secure=false is plain http for anyone", func(t *testing.T) {
		o, _, err := metricsOptions(parse(t, "--metrics-secure=false", "--metrics-bind-address=:8080"))
		if err != nil {
			t.Fatal(err)
		}
		if o.SecureServing || o.FilterProvider != nil {
			t.Errorf("secure %t, filter %t: want neither", o.SecureServing, o.FilterProvider != nil)
		}
	})
	t.Run("--metrics-cert-path serves that certificate", func(t *testing.T) {
		dir := t.TempDir()
		cert, key, err := certutil.GenerateSelfSignedCertKey("apitoken-operator-metrics", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "tls.crt"), cert)
		writeFile(t, filepath.Join(dir, "tls.key"), key)
		o, w, err := metricsOptions(parse(t, "--metrics-cert-path="+dir))
		if err != nil {
			t.Fatal(err)
		}
		c := tlsConfig(o.TLSOpts)
		if w == nil || c.GetCertificate == nil {
			t.Fatalf("cert watcher %v, GetCertificate set %t", w, c.GetCertificate != nil)
		}
		if got, err := c.GetCertificate(nil); err != nil || len(got.Certificate) == 0 {
			t.Errorf("GetCertificate: %v", err)
		}
	})
	t.Run("a missing certificate fails at start", func(t *testing.T) {
		if _, _, err := metricsOptions(parse(t, "--metrics-cert-path="+t.TempDir())); err == nil {
			t.Error("no error for a directory without tls.crt and tls.key")
		}
	})
}

func tlsConfig(opts []func(*tls.Config)) *tls.Config {
	c := &tls.Config{NextProtos: []string{"h2"}} // controller-runtime's starting point
	for _, o := range opts {
		o(c)
	}
	return c
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestParseMemoryLimit(t *testing.T) {
	tests := map[string]int64{
		"max\n":                 0,
		"536870912\n":           536870912,
		"9223372036854771712\n": 0, // cgroup v1 without a limit
		"":                      0,
		"garbage":               0,
	}
	for content, want := range tests {
		if got := parseMemoryLimit(content); got != want {
			t.Errorf("parseMemoryLimit(%q) = %d, want %d", content, got, want)
		}
	}
}

func TestSetMemoryLimitLeavesGOMEMLIMITAlone(t *testing.T) {
	if limit, from := setMemoryLimit("100MiB", 1<<30); limit != 0 || from != "GOMEMLIMIT" {
		t.Errorf("with GOMEMLIMIT set: %d from %q, want 0 from GOMEMLIMIT", limit, from)
	}
	if limit, _ := setMemoryLimit("", 0); limit != 0 {
		t.Errorf("without a container limit: %d, want 0", limit)
	}
	before := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(before)
	if limit, _ := setMemoryLimit("", 1000<<20); limit != 900<<20 || debug.SetMemoryLimit(-1) != 900<<20 {
		t.Errorf("1000 MiB container: limit %d, want 90%%", limit)
	}
}

func TestSetGCPercentDefaultsUnlessGOGCIsSet(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	if value, from := setGCPercent("80", 48<<20); value != "80" || from != "GOGC" || debug.SetGCPercent(100) != 100 {
		t.Errorf("with GOGC=80: %s from %q, and the runtime's value was changed", value, from)
	}
	if value, _ := setGCPercent("", 0); value != "20" || debug.SetGCPercent(100) != defaultGCPercent {
		t.Errorf("without GOGC: %s, want %d in effect", value, defaultGCPercent)
	}
}

func TestGCPercentFor(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		live, minHeap uint64
		want          int
	}{
		{live: 64 * mib, minHeap: 48 * mib, want: 20}, // 76.8 MiB at 20 %: above the floor
		{live: 40 * mib, minHeap: 48 * mib, want: 20}, // 48 MiB
		{live: 32 * mib, minHeap: 48 * mib, want: 50}, // the floor: 48 MiB
		{live: 16 * mib, minHeap: 48 * mib, want: 200},
		{live: 1 * mib, minHeap: 48 * mib, want: maxGCPercent},
		{live: 0, minHeap: 48 * mib, want: maxGCPercent},
		{live: 16 * mib, minHeap: 0, want: 20},
	} {
		if got := gcPercentFor(tc.live, tc.minHeap, 20); got != tc.want {
			t.Errorf("live %d MiB, floor %d MiB: %d, want %d", tc.live/mib, tc.minHeap/mib, got, tc.want)
		}
	}
}

func TestParseMinHeap(t *testing.T) {
	for value, want := range map[string]uint64{"48Mi": 48 << 20, "0": 0, "1G": 1e9} {
		if got, err := parseMinHeap(value); err != nil || got != want {
			t.Errorf("%q: %d, %v; want %d", value, got, err, want)
		}
	}
	for _, value := range []string{"-1Mi", "lots", ""} {
		if _, err := parseMinHeap(value); err == nil {
			t.Errorf("%q accepted", value)
		}
	}
}

// gcPercentNow is the runtime's GOGC, read without changing it.
func gcPercentNow() int64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// keepMinHeap retunes the percent after each collection to what is live: a
// live heap above the floor gets GOGC=20, a small one a large percent.
func TestKeepMinHeapRetunesAfterEachCollection(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	stop := keepMinHeap(48 << 20)
	defer stop()
	settled := func(want func(int64) bool) int64 {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			runtime.GC() // the finalizer of the cycle's mark runs after it
			time.Sleep(10 * time.Millisecond)
			if p := gcPercentNow(); want(p) {
				return p
			}
		}
		t.Fatalf("GOGC %d after collections", gcPercentNow())
		return 0
	}
	var large int64
	func() {
		ballast := make([][]byte, 256)
		for i := range ballast {
			ballast[i] = make([]byte, 1<<20) // 256 MiB live
		}
		large = settled(func(p int64) bool { return p == defaultGCPercent }) // above the floor
		runtime.KeepAlive(ballast)
	}()
	small := settled(func(p int64) bool { return p > 100 })
	t.Logf("GOGC with 256 MiB live: %d; without: %d", large, small)
	stop()
	debug.SetGCPercent(77)
	runtime.GC()
	runtime.GC()
	time.Sleep(50 * time.Millisecond)
	if p := gcPercentNow(); p != 77 {
		t.Errorf("stopped, yet the percent was changed to %d", p)
	}
}

func TestKubeAPIFlags(t *testing.T) {
	for _, tc := range []struct {
		args            []string
		qps             float32
		burst           int
		wantCompression bool
	}{
		{nil, -1, 200, false},
		{[]string{"--kube-api-qps=50", "--kube-api-burst=80"}, 50, 80, false},
		{[]string{"--kube-api-compression"}, -1, 200, true},
	} {
		fs := flag.NewFlagSet("operator", flag.ContinueOnError)
		f := bindFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		cfg := &rest.Config{}
		applyKubeAPIFlags(cfg, f)
		if cfg.QPS != tc.qps || cfg.Burst != tc.burst || cfg.DisableCompression == tc.wantCompression {
			t.Errorf("%v: QPS %v, burst %d, compression %v; want %v, %d, %v", tc.args, cfg.QPS, cfg.Burst, !cfg.DisableCompression, tc.qps, tc.burst, tc.wantCompression)
		}
	}
}

func TestMaxProcsFor(t *testing.T) {
	for _, tc := range []struct {
		name       string
		gomaxprocs string
		flag       int
		want       int // after the start-up passes; 0: the runtime's left as it is
		from       string
		fails      bool
	}{
		{name: "the operator's default", flag: defaultMaxProcs, want: 1, from: "--max-procs, after the leader's start-up passes"},
		{name: "more from the flag", flag: 3, want: 3, from: "--max-procs, after the leader's start-up passes"},
		{name: "0 keeps Go's default", flag: 0, from: "Go's default"},
		{name: "GOMAXPROCS in the environment wins", gomaxprocs: "4", flag: 1, from: "GOMAXPROCS"},
		{name: "negative", flag: -1, fails: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, from, err := maxProcsFor(tc.gomaxprocs, tc.flag)
			if (err != nil) != tc.fails {
				t.Fatalf("error %v, want failure %v", err, tc.fails)
			}
			if !tc.fails && (got != tc.want || from != tc.from) {
				t.Errorf("got %d from %q; want %d from %q", got, from, tc.want, tc.from)
			}
		})
	}
}

// The leader keeps Go's threads for its start-up passes, then drops to
// --max-procs; a leader stopped before then changes nothing.
func TestProcsAfterStartup(t *testing.T) {
	fire := make(chan time.Time, 1)
	var waited time.Duration
	var set []int
	p := procsAfterStartup{procs: 1,
		after: func(d time.Duration) <-chan time.Time { waited = d; return fire },
		set:   func(n int) int { set = append(set, n); return 2 }}
	if !p.NeedLeaderElection() {
		t.Fatal("runs on every replica; the start-up passes are the leader's")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := p.Start(ctx); err != nil || len(set) > 0 {
		t.Fatalf("stopped before the start-up passes: error %v, GOMAXPROCS set to %v", err, set)
	}
	fire <- time.Now()
	if err := p.Start(t.Context()); err != nil || waited != startupProcsFor || !slices.Equal(set, []int{1}) {
		t.Errorf("error %v, waited %v, GOMAXPROCS set to %v; want %v, then [1]", err, waited, set, startupProcsFor)
	}
}

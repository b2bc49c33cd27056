/*
Copyright 2026 The apitoken-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Command manager runs the apitoken-operator controllers: flags in, then
// controllers.NewManager (the one wiring). It must not import test/... or
// internal/tokenservice.
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/apitoken-dev/apitoken-operator/controllers"
)

// version is stamped at build time: go build -ldflags "-X main.version=v0.1.0".
var version = "dev"

// flags are the operator's command line.
type flags struct {
	metricsAddr, probeAddr, pprofAddr string
	secureMetrics, enableHTTP2        bool
	metricsCertPath                   string
	metricsCertName, metricsCertKey   string
	leaderElect                       bool
	leaderElectionNamespace           string
	credentialsNamespace              string
	maxConcurrentReconciles           int
	kubeAPIQPS                        float64
	kubeAPIBurst                      int
	kubeAPICompression                bool
	watchNamespaces                   string
	gcMinHeap                         string
	maxProcs                          int
	showVersion                       bool
	zap                               zap.Options
}

// bindFlags declares the operator's flags on fs.
func bindFlags(fs *flag.FlagSet) *flags {
	f := &flags{}
	fs.StringVar(&f.metricsAddr, "metrics-bind-address", ":8443", "The address the metrics endpoint binds to (HTTPS unless --metrics-secure=false); 0 disables it.")
	fs.BoolVar(&f.secureMetrics, "metrics-secure", true, "Serve metrics over HTTPS, only to clients that the Kubernetes API authenticates and authorizes for get on /metrics; false serves plain HTTP to anyone who can connect.")
	fs.StringVar(&f.metricsCertPath, "metrics-cert-path", "", "Directory of the metrics server's certificate and key, reloaded when they change; empty: a self-signed certificate made at start.")
	fs.StringVar(&f.metricsCertName, "metrics-cert-name", "tls.crt", "File name of the metrics server's certificate in --metrics-cert-path.")
	fs.StringVar(&f.metricsCertKey, "metrics-cert-key", "tls.key", "File name of the metrics server's key in --metrics-cert-path.")
	fs.BoolVar(&f.enableHTTP2, "enable-http2", false, "Allow HTTP/2 on the metrics server; off against the HTTP/2 Stream Cancellation and Rapid Reset CVEs.")
	fs.StringVar(&f.probeAddr, "health-probe-bind-address", ":8081", "The address the health probe endpoint binds to.")
	fs.StringVar(&f.pprofAddr, "pprof-bind-address", "0", "The address /debug/pprof binds to; 0 disables it (the default).")
	fs.BoolVar(&f.leaderElect, "leader-elect", false, "Enable leader election, so that one replica is active at a time.")
	fs.StringVar(&f.leaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader election lease; default: the Pod's namespace.")
	fs.StringVar(&f.credentialsNamespace, "credentials-namespace", "", "The only namespace that TokenBackends' admin key Secrets are read from; default: the Pod's namespace (POD_NAMESPACE).")
	fs.IntVar(&f.maxConcurrentReconciles, "max-concurrent-reconciles", 10, "ApiTokens reconciled in parallel.")
	fs.Float64Var(&f.kubeAPIQPS, "kube-api-qps", -1, "Sustained requests per second to the Kubernetes API; -1 (the default) sets no client-side limit and leaves it to the API server's priority and fairness, as controller-runtime does.")
	fs.IntVar(&f.kubeAPIBurst, "kube-api-burst", 200, "Burst of requests to the Kubernetes API; used only with a positive --kube-api-qps.")
	fs.BoolVar(&f.kubeAPICompression, "kube-api-compression", false, "Accept gzip from the Kubernetes API. Off by default: the API server then gzips every flush of the operator's watches, which costs CPU on both sides for bandwidth that matters only across a slow link.")
	fs.StringVar(&f.watchNamespaces, "watch-namespaces", "", "Comma-separated namespaces whose ApiTokens and Secrets are watched; empty watches all.")
	fs.StringVar(&f.gcMinHeap, "gc-min-heap", "40Mi", "The heap the garbage collector lets grow to before it runs, however little is live (above it, GOGC=20: a fifth more than what is live): a working space for the passes' garbage when few tokens are cached (see memlimit.go). 0 leaves GOGC=20 alone; a GOGC set in the environment wins.")
	fs.IntVar(&f.maxProcs, "max-procs", defaultMaxProcs, "How many threads run Go code at once (GOMAXPROCS). The operator mostly waits on the API server and its backends: with one, its goroutines hand work to each other without waking idle threads (15% less CPU per token; see maxprocs.go). Applied five seconds after the operator becomes the leader, Go's default before (its start-up passes). 0 leaves Go's default (the CPUs, or the container's CPU limit); GOMAXPROCS in the environment wins.")
	fs.BoolVar(&f.showVersion, "version", false, "Print the version and exit.")
	f.zap.BindFlags(fs)
	return f
}

// applyKubeAPIFlags sets the Kubernetes client's limits and compression from
// the flags.
func applyKubeAPIFlags(cfg *rest.Config, f *flags) {
	cfg.QPS = float32(f.kubeAPIQPS)
	cfg.Burst = f.kubeAPIBurst
	cfg.DisableCompression = !f.kubeAPICompression
}

func main() {
	f := bindFlags(flag.CommandLine)
	flag.Parse()
	if f.showVersion {
		fmt.Println("apitoken-operator", version)
		return
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&f.zap)))
	log := ctrl.Log.WithName("setup")
	minHeap, err := parseMinHeap(f.gcMinHeap)
	if err != nil {
		log.Error(err, "unable to start")
		os.Exit(1)
	}
	procs, procsFrom, err := maxProcsFor(os.Getenv("GOMAXPROCS"), f.maxProcs)
	if err != nil {
		log.Error(err, "unable to start")
		os.Exit(1)
	}
	log.Info("Go scheduler", "GOMAXPROCS", runtime.GOMAXPROCS(0), "then", procs, "from", procsFrom)
	gcPercent, gcFrom := setGCPercent(os.Getenv("GOGC"), minHeap)
	log.Info("Go garbage collector", "GOGC", gcPercent, "from", gcFrom)
	if limit, from := setMemoryLimit(os.Getenv("GOMEMLIMIT"), cgroupMemoryLimit()); limit > 0 {
		log.Info("Go memory limit set", "bytes", limit, "from", from)
	}
	exit := func(err error, msg string) {
		log.Error(err, msg)
		os.Exit(1)
	}

	credentialsNS, err := credentialsNamespace(f.credentialsNamespace, os.Getenv("POD_NAMESPACE"))
	if err != nil {
		exit(err, "unable to start")
	}
	metricsOpts, certWatcher, err := metricsOptions(f)
	if err != nil {
		exit(err, "unable to set up the metrics server")
	}

	cfg := ctrl.GetConfigOrDie()
	applyKubeAPIFlags(cfg, f)

	mgr, err := controllers.NewManager(cfg, ctrl.Options{
		Metrics:                 metricsOpts,
		HealthProbeBindAddress:  f.probeAddr,
		PprofBindAddress:        f.pprofAddr,
		LeaderElection:          f.leaderElect,
		LeaderElectionID:        "apitoken-operator.tokens.apitoken.dev",
		LeaderElectionNamespace: f.leaderElectionNamespace,
		// A stopping operator gives up the lease at once, so that its successor
		// in a rolling update leads without waiting for the lease to expire.
		// Safe because the process exits as soon as the manager returns.
		LeaderElectionReleaseOnCancel: true,
	}, controllers.Options{
		MaxConcurrentReconciles: f.maxConcurrentReconciles,
		CredentialsNamespace:    credentialsNS,
		WatchNamespaces:         splitList(f.watchNamespaces),
	})
	if err != nil {
		exit(err, "unable to set up the operator")
	}
	if certWatcher != nil {
		if err := mgr.Add(certWatcher); err != nil {
			exit(err, "unable to watch the metrics certificate")
		}
	}
	if procs > 0 {
		if err := mgr.Add(procsAfterStartup{procs: procs, after: time.After, set: runtime.GOMAXPROCS}); err != nil {
			exit(err, "unable to set up the Go scheduler")
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		exit(err, "unable to set up health check")
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		exit(err, "unable to set up ready check")
	}
	log.Info("starting manager", "version", version, "credentialsNamespace", credentialsNS, "secureMetrics", f.secureMetrics)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		exit(err, "problem running manager")
	}
}

// credentialsNamespace is where admin key Secrets are read: the flag when given,
// else the Pod's namespace. Without either the operator must not guess.
func credentialsNamespace(flagValue, podNamespace string) (string, error) {
	ns := flagValue
	if ns == "" {
		ns = podNamespace
	}
	if ns == "" {
		return "", errors.New("no credentials namespace: set --credentials-namespace, or POD_NAMESPACE (config/manager sets it from the Pod), to the operator's namespace, where the TokenBackends' admin key Secrets are read")
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return "", fmt.Errorf("credentials namespace %q is not a namespace name: %s", ns, strings.Join(errs, "; "))
	}
	return ns, nil
}

// metricsOptions configures the metrics server as kubebuilder does: HTTPS with
// authentication and authorization unless --metrics-secure=false, the
// certificate of --metrics-cert-path (watched for renewals) or a self-signed
// one, and no HTTP/2 unless --enable-http2.
func metricsOptions(f *flags) (metricsserver.Options, *certwatcher.CertWatcher, error) {
	o := metricsserver.Options{BindAddress: f.metricsAddr}
	if !f.enableHTTP2 {
		o.TLSOpts = append(o.TLSOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	if !f.secureMetrics {
		return o, nil, nil
	}
	controllers.SecureMetrics(&o)
	if f.metricsCertPath == "" {
		return o, nil, nil
	}
	w, err := certwatcher.New(filepath.Join(f.metricsCertPath, f.metricsCertName), filepath.Join(f.metricsCertPath, f.metricsCertKey))
	if err != nil {
		return o, nil, fmt.Errorf("load the metrics certificate from %s: %w", f.metricsCertPath, err)
	}
	o.TLSOpts = append(o.TLSOpts, func(c *tls.Config) { c.GetCertificate = w.GetCertificate })
	return o, w, nil
}

// splitList splits a comma-separated flag value, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

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

// Command manager runs the apitoken-operator controllers.
package main

import (
	"flag"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/apitoken-dev/apitoken-operator/controllers"
)

func main() {
	var (
		metricsAddr, probeAddr  string
		pprofAddr               string
		leaderElect             bool
		leaderElectionNamespace string
		maxConcurrentReconciles int
		kubeAPIQPS              float64
		kubeAPIBurst            int
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "The address the metrics endpoint binds to; 0 disables it.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "The address the health probe endpoint binds to.")
	flag.StringVar(&pprofAddr, "pprof-bind-address", "0", "The address /debug/pprof binds to; 0 disables it (the default).")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Enable leader election, so that one replica is active at a time.")
	flag.StringVar(&leaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader election lease; default: the Pod's namespace.")
	flag.IntVar(&maxConcurrentReconciles, "max-concurrent-reconciles", 10, "ApiTokens reconciled in parallel.")
	flag.Float64Var(&kubeAPIQPS, "kube-api-qps", 100, "Sustained requests per second to the Kubernetes API.")
	flag.IntVar(&kubeAPIBurst, "kube-api-burst", 200, "Burst of requests to the Kubernetes API.")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")

	cfg := ctrl.GetConfigOrDie()
	cfg.QPS = float32(kubeAPIQPS)
	cfg.Burst = kubeAPIBurst

	mgr, err := controllers.NewManager(cfg, ctrl.Options{
		Metrics:                 metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:  probeAddr,
		PprofBindAddress:        pprofAddr,
		LeaderElection:          leaderElect,
		LeaderElectionID:        "apitoken-operator.tokens.apitoken.dev",
		LeaderElectionNamespace: leaderElectionNamespace,
		// A stopping operator gives up the lease at once, so that its successor
		// in a rolling update leads without waiting for the lease to expire.
		// Safe because the process exits as soon as the manager returns.
		LeaderElectionReleaseOnCancel: true,
	}, controllers.Options{MaxConcurrentReconciles: maxConcurrentReconciles})
	if err != nil {
		log.Error(err, "unable to set up the operator")
		os.Exit(1)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		log.Error(err, "unable to set up health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		log.Error(err, "unable to set up ready check")
		os.Exit(1)
	}
	log.Info("starting manager")
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "problem running manager")
		os.Exit(1)
	}
}

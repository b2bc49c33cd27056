// Package framework is the one test framework of every layer (cluster-api's
// test/framework is the model): the control plane (etcd, kube-apiserver and
// kube-controller-manager, built from the Go module proxy), tokenservice in-process
// and as a binary, the operator as a manager in-process or as its binary running
// as its ServiceAccount, the leak search, and the waiters. Its subpackage faults
// is the one fault injector (transport faults and process crashes).
//
// What the tests of every layer do alike lives here once: kubeconfig files,
// kubectl, namespaces and the credentials of a token Secret (kubectl.go,
// tokenservice.go); waiting, with the timeouts of every test (wait.go);
// asserting that nothing was written, by a watch from a known
// resourceVersion rather than a sleep (writes.go); and the table of what a
// TokenBackend's policy and catalog refuse, which the admission policy and
// the operator's own rules must both honour (policycases.go).
//
// make dev (cmd/devcluster), the integration suite (controllers), the reliability
// suites, the end-to-end tests and the bench all build on it. It is test code:
// the shipped binaries (main.go, cmd/tokenservice) must not import it, and it
// must not import controllers (the integration suite is inside that package), so
// callers pass controllers.Setup to it.
package framework

package framework

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The timeouts of every layer's tests, from one place: a test that needs
// longer says so with a multiple of one of them, never with a number of its
// own, so that a slow machine is answered here once.
const (
	// WaitTimeout is how long one change may take to show: a reconcile, an
	// event, admission seeing a TokenBackend through its watch, a process
	// answering on its port.
	WaitTimeout = 30 * time.Second
	// LongWait is for what takes several passes or a restart: an ApiToken made
	// and delivered end to end, a TokenBackend reaching its verdict, a
	// restarted operator taking the lease.
	LongWait = 60 * time.Second
	// QuietPeriod is how long a test watches for a write that must not come
	// (ExpectNoWrites, WriteWatch).
	QuietPeriod = 2 * time.Second
)

// PollInterval is how often Poll, Eventually and Consistently check.
const PollInterval = 50 * time.Millisecond

// Poll calls check until it returns nil or timeout has passed, and returns its
// last error.
func Poll(timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(PollInterval)
	}
}

// Eventually fails the test when check has not passed within timeout.
func Eventually(t testing.TB, what string, timeout time.Duration, check func() error) {
	t.Helper()
	if err := Poll(timeout, check); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// Consistently fails the test the first time check fails within d: what must
// hold throughout a period, checked at every PollInterval of it.
func Consistently(t testing.TB, what string, d time.Duration, check func() error) {
	t.Helper()
	for deadline := time.Now().Add(d); ; time.Sleep(PollInterval) {
		if err := check(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if time.Now().After(deadline) {
			return
		}
	}
}

// ConditionTrue reports whether the condition of that type is True.
func ConditionTrue(conditions []metav1.Condition, conditionType string) bool {
	for _, c := range conditions {
		if c.Type == conditionType {
			return c.Status == metav1.ConditionTrue
		}
	}
	return false
}

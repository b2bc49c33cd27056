package framework

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PollInterval is how often Poll and Eventually check.
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

// ConditionTrue reports whether the condition of that type is True.
func ConditionTrue(conditions []metav1.Condition, conditionType string) bool {
	for _, c := range conditions {
		if c.Type == conditionType {
			return c.Status == metav1.ConditionTrue
		}
	}
	return false
}

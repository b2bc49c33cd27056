package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// leakedToken stands for an auth token that found its way into an error's text.
const leakedToken = "AT0123456789abcdef0123456789abcdef"

func TestRetryMessage(t *testing.T) {
	unreachable := func(addr string) error {
		return fmt.Errorf("create token: %w", &backend.APIError{Call: "create", Title: "backend unreachable: dial tcp " + addr + ": connect: connection refused"})
	}
	conflict := func(name string) error {
		return fmt.Errorf("update Secret %s: %w", name, apierrors.NewConflict(schema.GroupResource{Resource: "secrets"}, name, fmt.Errorf("the object has been modified")))
	}
	tests := map[string]struct {
		err error
		// sameKind is another error of the same kind, with other text: its
		// message must be the same, or a repeating failure writes status each pass.
		sameKind error
		want     string
	}{
		"backend unreachable": {
			err: unreachable("10.0.0.1:4711"), sameKind: unreachable("10.0.0.2:4712"),
			want: "Retrying: the backend could not be reached (create)",
		},
		"backend answer unreadable": {
			err:  &backend.APIError{Call: "get", StatusCode: 200, Title: "malformed response"},
			want: "Retrying: the backend's answer to get could not be read",
		},
		"backend HTTP status": {
			err:      fmt.Errorf("read token TK1: %w", &backend.APIError{Call: "get", StatusCode: 503, Title: "down for " + leakedToken}),
			sameKind: fmt.Errorf("read token TK2: %w", &backend.APIError{Call: "get", StatusCode: 503, Title: "maintenance"}),
			want:     "Retrying: the backend answered get with HTTP 503 Service Unavailable",
		},
		"backend HTTP status without a name": {
			err:  &backend.APIError{Call: "update", StatusCode: 599},
			want: "Retrying: the backend answered update with HTTP 599",
		},
		"backend given up before a request": {
			err:  fmt.Errorf("%s: %w: %w", "reset", backend.ErrUnavailable, context.Canceled),
			want: "Retrying: the backend is unavailable",
		},
		"Kubernetes API reason": {
			err: conflict("etl"), sameKind: conflict("other"),
			want: "Retrying: the Kubernetes API answered Conflict",
		},
		"timeout": {
			err:  fmt.Errorf("get namespace analytics: %w", context.DeadlineExceeded),
			want: "Retrying: the operation timed out",
		},
		"canceled": {
			err:  fmt.Errorf("get namespace analytics: %w", context.Canceled),
			want: "Retrying: the operation was canceled",
		},
		"anything else": {
			err: fmt.Errorf("create Secret etl: %s", leakedToken), sameKind: errTest,
			want: "Retrying: an unexpected error occurred (the operator's log has it)",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := retryMessage(tc.err)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("retryMessage (-want +got):\n%s", diff)
			}
			if tc.sameKind != nil {
				if diff := cmp.Diff(got, retryMessage(tc.sameKind)); diff != "" {
					t.Errorf("another error of the same kind changes the message (-first +other):\n%s", diff)
				}
			}
			if strings.Contains(got, leakedToken) {
				t.Errorf("message %q quotes the error's text", got)
			}
		})
	}
}

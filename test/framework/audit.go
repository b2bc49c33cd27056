package framework

// This file: the API server's audit log (Options.Audit), read back.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// ReadAuditLog reads every event of an audit log written with
// audit-log-format=json. It fails on a file it cannot read or a line it cannot
// parse, and on an empty log: a search in it would prove nothing.
func ReadAuditLog(path string) ([]auditv1.Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read the audit log: %w", err)
	}
	defer f.Close()
	var events []auditv1.Event
	dec := json.NewDecoder(f)
	for {
		var ev auditv1.Event
		err := dec.Decode(&ev)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("parse audit event %d of %s: %w", len(events)+1, path, err)
		}
		events = append(events, ev)
	}
	if len(events) == 0 {
		return nil, fmt.Errorf("the audit log %s holds no event", path)
	}
	return events, nil
}

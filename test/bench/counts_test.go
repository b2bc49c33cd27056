package bench

// This file: counting in the audit log and tokenservice's log, in the
// operator's metrics and in /proc.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// logMarks are line positions in the audit log and in tokenservice's log.
type logMarks struct{ audit, ts int }

func lineCount(t *testing.T, path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		n++
	}
	return n
}

// eachLine calls f for lines [from, to) of a file; to < 0 means to its end.
func eachLine(t *testing.T, path string, from, to int, f func([]byte)) {
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for i := 0; sc.Scan() && (to < 0 || i < to); i++ {
		if i >= from {
			f(sc.Bytes())
		}
	}
}

// eachRecord calls f for the lines [from, to) of a JSON-lines file that decode
// into a T and pass keep.
func eachRecord[T any](t *testing.T, path string, from, to int, keep func(*T) bool, f func(*T)) {
	eachLine(t, path, from, to, func(line []byte) {
		var e T
		if json.Unmarshal(line, &e) == nil && keep(&e) {
			f(&e)
		}
	})
}

type auditEvent struct {
	Verb      string `json:"verb"`
	Stage     string `json:"stage"`
	ObjectRef struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
	} `json:"objectRef"`
	ResponseStatus struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	RequestObject json.RawMessage `json:"requestObject"`
}

// completed keeps the audit events of completed requests.
func completed(e *auditEvent) bool { return e.Stage == "ResponseComplete" }

// auditCounts counts the operator's requests by "verb resource[/subresource] code".
func auditCounts(t *testing.T, path string, from, to int) map[string]int {
	out := map[string]int{}
	eachRecord(t, path, from, to, completed, func(e *auditEvent) {
		res := e.ObjectRef.Resource
		if e.ObjectRef.Subresource != "" {
			res += "/" + e.ObjectRef.Subresource
		}
		out[fmt.Sprintf("%s %s %d", e.Verb, res, e.ResponseStatus.Code)]++
	})
	return out
}

// idleTokenWrites lists the operator's writes in lines [from, to) of the audit
// log, except to leases, events and objects named probePrefix* (when not empty).
func idleTokenWrites(t *testing.T, path string, from, to int, probePrefix string) []string {
	var writes []string
	eachRecord(t, path, from, to, completed, func(e *auditEvent) {
		switch e.Verb {
		case "get", "list", "watch":
			return
		}
		if e.ObjectRef.Resource == "leases" || e.ObjectRef.Resource == "events" || (probePrefix != "" && strings.HasPrefix(e.ObjectRef.Name, probePrefix)) {
			return
		}
		writes = append(writes, fmt.Sprintf("%s %s %s/%s %s", e.Verb, e.ObjectRef.Resource+"/"+e.ObjectRef.Subresource,
			e.ObjectRef.Namespace, e.ObjectRef.Name, e.RequestObject))
	})
	return writes
}

// A tokenServiceRequest is a request line of tokenservice's log.
type tokenServiceRequest struct {
	Time   time.Time `json:"time"`
	Msg    string    `json:"msg"`
	Method string    `json:"method"`
	Path   string    `json:"path"`
	Status int       `json:"status"`
}

// isRequest keeps the request lines of tokenservice's log.
func isRequest(e *tokenServiceRequest) bool { return e.Msg == "request" }

// tokenServiceCounts counts tokenservice's requests by "METHOD path status".
func tokenServiceCounts(t *testing.T, path string, from, to int) map[string]int {
	out := map[string]int{}
	eachRecord(t, path, from, to, isRequest, func(e *tokenServiceRequest) {
		p, _ := tokenServicePath(e.Path)
		out[fmt.Sprintf("%s %s %d", e.Method, p, e.Status)]++
	})
	return out
}

// tokenServicePath is a request path with its account SID replaced by {sid},
// and that SID ("" when the path names no token).
func tokenServicePath(p string) (string, string) {
	if !strings.HasPrefix(p, "/v1/tokens/") {
		return p, ""
	}
	rest := strings.SplitN(strings.TrimPrefix(p, "/v1/tokens/"), "/", 2)
	p = "/v1/tokens/{sid}"
	if len(rest) == 2 {
		p += "/" + rest[1]
	}
	return p, rest[0]
}

func sumCounts(m map[string]int) int {
	n := 0
	for k, v := range m {
		if !strings.Contains(k, "/v1/catalog") {
			n += v
		}
	}
	return n
}

// firstReads counts the tokens of sids that tokenservice's log shows read after
// line from, and when the last of them was first read.
func firstReads(t *testing.T, path string, from int, sids map[string]bool) (int, time.Time) {
	seen := map[string]bool{}
	var last time.Time
	eachRecord(t, path, from, -1, isRequest, func(e *tokenServiceRequest) {
		if e.Method != http.MethodGet {
			return
		}
		sid := strings.TrimPrefix(e.Path, "/v1/tokens/")
		if sids[sid] && !seen[sid] {
			seen[sid] = true
			last = e.Time
		}
	})
	return len(seen), last
}

// operatorMetrics reads the operator's Prometheus metrics.
func operatorMetrics(metricsURL string) (string, error) {
	resp, err := http.Get(metricsURL)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body), nil
}

// backendCallsSoFar sums the operator's apitoken_backend_requests_total for one
// call since the process started.
func backendCallsSoFar(metricsURL, call string) float64 {
	body, err := operatorMetrics(metricsURL)
	if err != nil {
		return 0
	}
	sum := 0.0
	prefix := `apitoken_backend_requests_total{call="` + call + `"`
	for _, line := range strings.Split(body, "\n") {
		if fields := strings.Fields(line); strings.HasPrefix(line, prefix) && len(fields) == 2 {
			v, _ := strconv.ParseFloat(fields[1], 64)
			sum += v
		}
	}
	return sum
}

// rss and peakRSS read the operator's resident set (VmRSS) and its high-water
// mark (VmHWM) in KiB.
func rss(t *testing.T, pid int) int64     { return procStatus(t, pid, "VmRSS:") }
func peakRSS(t *testing.T, pid int) int64 { return procStatus(t, pid, "VmHWM:") }

func procStatus(t *testing.T, pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, field) {
			v, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return v
		}
	}
	return 0
}

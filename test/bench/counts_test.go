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

// lineCount counts the complete lines of a file (0 when it cannot be read).
func lineCount(t *testing.T, path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	_ = eachCompleteLine(f, func([]byte) bool { n++; return true })
	return n
}

// eachCompleteLine calls f for each line of r that ends in a newline, until f
// returns false. The logs are read while their writers append to them: a last
// line without its newline is still being written, and is left for a later
// read.
func eachCompleteLine(r io.Reader, f func([]byte) bool) error {
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		line, err := br.ReadBytes('\n')
		if err == io.EOF {
			return nil // no line, or one not yet written to its end
		}
		if err != nil {
			return err
		}
		if !f(line[:len(line)-1]) {
			return nil
		}
	}
}

// eachLine calls f for lines [from, to) of a file; to < 0 means to its last
// complete line (eachCompleteLine). A
// count built on data that was not read must not print 0 and pass: it fails when
// the file cannot be read to its end, when it is shorter than the range (it was
// rotated or truncated), or when the range is empty.
func eachLine(t *testing.T, path string, from, to int, f func([]byte)) {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	i := 0
	err = eachCompleteLine(file, func(line []byte) bool {
		if to >= 0 && i >= to {
			return false
		}
		if i >= from {
			f(line)
		}
		i++
		return true
	})
	if err != nil {
		t.Fatalf("%s: read to line %d: %v", path, i, err)
	}
	if i <= from || (to >= 0 && i < to) {
		t.Fatalf("%s: lines [%d, %d) asked, the file has %d lines (rotated or truncated?)", path, from, to, i)
	}
}

// eachRecord calls f for the lines [from, to) of a JSON-lines file that decode
// into a T and pass keep.
func eachRecord[T any](t *testing.T, path string, from, to int, keep func(*T) bool, f func(*T)) {
	t.Helper()
	eachLine(t, path, from, to, func(line []byte) {
		var e T
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("%s: a line that is not JSON (%v): %.200s", path, err, line)
		}
		if keep(&e) {
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
// No request at all in the range cannot be right (the operator renews its lease
// every few seconds): it fails rather than count nothing.
func auditCounts(t *testing.T, path string, from, to int) map[string]int {
	t.Helper()
	out := map[string]int{}
	eachRecord(t, path, from, to, completed, func(e *auditEvent) {
		res := e.ObjectRef.Resource
		if e.ObjectRef.Subresource != "" {
			res += "/" + e.ObjectRef.Subresource
		}
		out[fmt.Sprintf("%s %s %d", e.Verb, res, e.ResponseStatus.Code)]++
	})
	if len(out) == 0 {
		t.Fatalf("%s: no completed request in lines [%d, %d)", path, from, to)
	}
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

// tokenServiceCounts counts tokenservice's requests by "METHOD path status"; it
// fails when there are none.
func tokenServiceCounts(t *testing.T, path string, from, to int) map[string]int {
	t.Helper()
	out := map[string]int{}
	eachRecord(t, path, from, to, isRequest, func(e *tokenServiceRequest) {
		p, _ := tokenServicePath(e.Path)
		out[fmt.Sprintf("%s %s %d", e.Method, p, e.Status)]++
	})
	if len(out) == 0 {
		t.Fatalf("%s: no request in lines [%d, %d)", path, from, to)
	}
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

// queueDepth sums workqueue_depth of one controller's queue (over its
// priorities); -1 when the metrics cannot be read or hold no such series.
func queueDepth(metricsURL, name string) float64 {
	sum, found := sumSeries(metricsURL, func(line string) bool {
		return strings.HasPrefix(line, "workqueue_depth{") && strings.Contains(line, `name="`+name+`"`)
	})
	if !found {
		return -1
	}
	return sum
}

// backendCallsSoFar sums the operator's apitoken_backend_requests_total for one
// call since the process started.
func backendCallsSoFar(metricsURL, call string) float64 {
	sum, _ := sumSeries(metricsURL, func(line string) bool {
		return strings.HasPrefix(line, `apitoken_backend_requests_total{call="`+call+`"`)
	})
	return sum
}

// sumSeries adds up the values of the operator's metric lines that match, and
// reports whether any did (false too when the metrics cannot be read).
func sumSeries(metricsURL string, match func(line string) bool) (float64, bool) {
	body, err := operatorMetrics(metricsURL)
	if err != nil {
		return 0, false
	}
	sum, found := 0.0, false
	for _, line := range strings.Split(body, "\n") {
		if fields := strings.Fields(line); len(fields) == 2 && match(line) {
			v, _ := strconv.ParseFloat(fields[1], 64)
			sum, found = sum+v, true
		}
	}
	return sum, found
}

// tokenReads counts the conditional reads of single tokens among tokenservice's
// requests (tokenServiceCounts), and those answered 304.
func tokenReads(counts map[string]int) (gets, notModified int) {
	for key, count := range counts {
		if strings.HasPrefix(key, "GET /v1/tokens/{sid} ") {
			gets += count
			if strings.HasSuffix(key, " 304") {
				notModified += count
			}
		}
	}
	return gets, notModified
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

// procStat reads /proc/PID/stat: the command name, the parent's pid, and the
// user and system time so far (fields 14 and 15, in clock ticks of 1/100 s on
// Linux). ok is false when the process is gone or the line cannot be read.
func procStat(pid int) (comm string, ppid int, cpu float64, ok bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, 0, false
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	open, end := strings.IndexByte(string(data), '('), strings.LastIndexByte(string(data), ')')
	if open < 0 || end < open {
		return "", 0, 0, false
	}
	rest := strings.Fields(string(data[end+1:]))
	if len(rest) < 13 {
		return "", 0, 0, false
	}
	ppid, err1 := strconv.Atoi(rest[1])
	utime, err2 := strconv.ParseFloat(rest[11], 64)
	stime, err3 := strconv.ParseFloat(rest[12], 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return "", 0, 0, false
	}
	return string(data[open+1 : end]), ppid, (utime + stime) / 100, true
}

// cpuSeconds is the user and system time of a process so far, in seconds.
func cpuSeconds(t *testing.T, pid int) float64 {
	_, _, cpu, ok := procStat(pid)
	if !ok {
		t.Fatalf("/proc/%d/stat cannot be read", pid)
	}
	return cpu
}

// clusterCPU is the CPU time so far of this test process ("bench") and of each of
// its children by command name (kube-apiserver, etcd, tokenservice, manager):
// where the machine's work goes, the API server's included.
func clusterCPU(t *testing.T) map[string]float64 {
	self := os.Getpid()
	out := map[string]float64{"bench": cpuSeconds(t, self)}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if comm, ppid, cpu, ok := procStat(pid); ok && ppid == self {
			out[comm] += cpu
		}
	}
	return out
}

// cpuSince is the CPU time each process used since before, in ms per token,
// for the log.
func cpuSince(before, after map[string]float64, n int) map[string]string {
	return formatCPU(cpuPerToken(before, after, n))
}

// cpuPerToken is the CPU time each process used since before, in ms per token.
func cpuPerToken(before, after map[string]float64, n int) map[string]float64 {
	out := map[string]float64{}
	for name, v := range after {
		out[name] = 1000 * (v - before[name]) / float64(n)
	}
	return out
}

// formatCPU writes each process's ms per token for the log.
func formatCPU(perToken map[string]float64) map[string]string {
	out := map[string]string{}
	for name, v := range perToken {
		out[name] = fmt.Sprintf("%.2f ms/token", v)
	}
	return out
}

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wagate/wagate/ingest"
	"github.com/wagate/wagate/internal/testenv"
)

// hostileIngress starts the ingress binary with extra env on fresh ports and
// returns it with its webhook and admin base URLs.
func hostileIngress(t *testing.T, env ...string) (p *process, base, admin string) {
	t.Helper()
	dir := binaries(t)
	port, adminPort := testenv.FreePort(t), testenv.FreePort(t)
	p = start(t, filepath.Join(dir, "ingress"), "ingress", append([]string{
		"WAGATE_REDIS_URL=" + testenv.RedisURL(t),
		"WAGATE_NATS_URL=" + testenv.NATSURL(t),
		"WAGATE_META_APP_SECRET=" + secret,
		"WAGATE_LOG_FORMAT=json",
		fmt.Sprintf("WAGATE_HTTP_ADDR=127.0.0.1:%d", port),
		fmt.Sprintf("WAGATE_ADMIN_ADDR=127.0.0.1:%d", adminPort),
	}, env...)...)
	base, admin = fmt.Sprintf("http://127.0.0.1:%d", port), fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	waitReady(t, admin+"/readyz")
	return p, base, admin
}

// output is what p wrote so far.
func (p *process) output() string { return p.cmd.Stdout.(*syncWriter).String() }

// checkRecords fails the test unless every line of out is one JSON record.
func checkRecords(t *testing.T, name, out string) (lines int) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		lines++
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil || rec["msg"] == nil {
			t.Errorf("%s line %d is not a JSON record: %.300q", name, lines, sc.Text())
		}
	}
	return lines
}

// An unauthenticated flood (no signature header, as any outsider sends)
// cannot fill a disk: the refusal lines are sampled while every refusal is
// counted in wagate_ingest_requests_total. The test floods for 2 s and logs
// the request rate and the log bytes written per second.
func TestHostileUnauthenticatedFloodLogs(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: skipped in -short mode")
	}
	const rate = 10 // the default WAGATE_LOG_SAMPLE_RATE
	p, base, admin := hostileIngress(t)
	before := len(p.output())

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	var sent atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range 8 {
		wg.Go(func() {
			body := []byte(`{"object":"whatsapp_business_account","entry":[]}`)
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/webhooks/whatsapp", bytes.NewReader(body))
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("unsigned POST: %d, want 401", resp.StatusCode)
					return
				}
				sent.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	flood := p.output()[before:]
	refusals := strings.Count(flood, "signature header missing")
	t.Logf("%d unauthenticated requests in %v (%.0f/s): %d log bytes (%.0f B/s), %d refusal lines",
		sent.Load(), elapsed.Round(time.Millisecond), float64(sent.Load())/elapsed.Seconds(),
		len(flood), float64(len(flood))/elapsed.Seconds(), refusals)
	if sent.Load() < 100 {
		t.Fatalf("only %d requests sent: no flood", sent.Load())
	}
	if allowed := rate + int(elapsed.Seconds()*rate) + 2; refusals > allowed || refusals == 0 {
		t.Errorf("%d refusal lines for %d refusals in %v, want 1..%d (sampled)", refusals, sent.Load(), elapsed, allowed)
	}
	checkRecords(t, "ingress", p.output())
	// Requests cut short by the end of the flood were answered too: at least
	// every refusal the flood saw is counted.
	if got := metricValue(t, admin+"/metrics", `wagate_ingest_requests_total{code="401",route="/webhooks/whatsapp"}`); got < float64(sent.Load()) {
		t.Errorf("401s counted %v, want at least %d (every refusal)", got, sent.Load())
	}
}

// peakRSS returns the peak resident set of process pid (VmHWM), in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// containerLimit is the ingress's memory limit in the base manifest
// (deployments/k8s/base/ingress-deployment.yaml), and gomemlimit the
// GOMEMLIMIT set there; deployments' tests check they agree.
const (
	containerLimit = 256 << 20
	gomemlimit     = "224MiB"
)

// Under the manifests' memory settings and the default body memory, bodies
// that cannot be authentic (no header, a malformed one, a well-formed but
// wrong signature) sent 120 at a time with 4 MiB each, mixed with valid
// 900 KB bodies, keep the ingress's peak RSS under the container's limit.
func TestHostileBodiesMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: skipped in -short mode")
	}
	p, base, _ := hostileIngress(t, "GOMEMLIMIT="+gomemlimit)
	big := bytes.Repeat([]byte("x"), 4<<20)
	valid := func(i int) []byte {
		text := strings.Repeat("v", 900_000)
		return []byte(fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"1","phone_number_id":"2"},"messages":[{"from":"15550000001","id":"wamid.MEM%d","timestamp":"1750000000","type":"text","text":{"body":%q}}]}}]}]}`, i, text))
	}
	codes := map[int]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 120 {
		wg.Go(func() {
			var body []byte
			h := http.Header{}
			switch i % 4 {
			case 0: // no header
				body = big
			case 1: // malformed
				body = big
				h.Set(ingest.HeaderSignature, "sha256=nothex")
			case 2: // well formed, wrong
				body = big
				h.Set(ingest.HeaderSignature, ingest.Sign(big, "not-the-secret"))
			case 3:
				body = valid(i)
				h.Set(ingest.HeaderSignature, ingest.Sign(body, secret))
			}
			req, _ := http.NewRequest(http.MethodPost, base+"/webhooks/whatsapp", bytes.NewReader(body))
			req.Header = h
			resp, err := http.DefaultClient.Do(req)
			code := 0
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				code = resp.StatusCode
			}
			mu.Lock()
			codes[code]++
			mu.Unlock()
		})
	}
	wg.Wait()
	peak := peakRSS(t, p.cmd.Process.Pid)
	t.Logf("answers %v; peak RSS %d MiB (limit %d MiB, GOMEMLIMIT %s)", codes, peak>>20, containerLimit>>20, gomemlimit)
	if codes[http.StatusUnauthorized] < 60 {
		t.Errorf("answers %v: want the 90 unauthentic bodies refused 401 (or 503 when body memory is full)", codes)
	}
	if peak >= containerLimit {
		t.Errorf("peak RSS %d MiB, want under the container's limit of %d MiB", peak>>20, containerLimit>>20)
	}
}

// A downstream that writes bytes nobody asked for (an unsolicited response
// on an idle keep-alive connection) makes net/http write a log line of its
// own; it is one JSON record in the worker's log, like every other line.
func TestHostileDownstreamLogFormat(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: skipped in -short mode")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				req, err := http.ReadRequest(r)
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, req.Body)
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
				time.Sleep(50 * time.Millisecond) // the connection is idle now
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Chosen: by the downstream\r\n\r\n{\"not\": \"wagate\"}\n")
				time.Sleep(200 * time.Millisecond)
			}()
		}
	}()

	dir := binaries(t)
	redisURL, natsURL := testenv.RedisURL(t), testenv.NATSURL(t)
	common := []string{"WAGATE_REDIS_URL=" + redisURL, "WAGATE_NATS_URL=" + natsURL, "WAGATE_META_APP_SECRET=" + secret, "WAGATE_LOG_FORMAT=json"}
	port, adminPort, wport := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	ing := start(t, filepath.Join(dir, "ingress"), "ingress", append(common,
		fmt.Sprintf("WAGATE_HTTP_ADDR=127.0.0.1:%d", port), fmt.Sprintf("WAGATE_ADMIN_ADDR=127.0.0.1:%d", adminPort))...)
	waitReady(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort))
	w := start(t, filepath.Join(dir, "worker"), "worker", append(common,
		"WAGATE_HANDLER=forward", "WAGATE_FORWARD_URL=http://"+ln.Addr().String()+"/hook?token=s3cret-in-query",
		fmt.Sprintf("WAGATE_WORKER_HTTP_ADDR=127.0.0.1:%d", wport))...)
	waitReady(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", wport))

	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for i := range 3 {
		body := []byte(fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"1","phone_number_id":"2"},"messages":[{"from":"15550000001","id":"wamid.DOWN%d%d","timestamp":"1750000000","type":"text","text":{"body":"hi"}}]}}]}]}`, time.Now().UnixNano(), i))
		if code, err := post(base, fixture{provider: "cloud", body: body}); err != nil || code != http.StatusOK {
			t.Fatalf("POST: %d %v", code, err)
		}
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		return strings.Contains(w.output(), "Unsolicited response")
	}, "the worker's HTTP client never met the unsolicited response")
	checkRecords(t, "worker", w.output())
	checkRecords(t, "ingress", ing.output())
	if strings.Contains(w.output(), "s3cret-in-query") {
		t.Errorf("the forward URL's query token is in the worker's log")
	}
}

// One signed body may not fan out without bound: a 1 MB Cloud API body of
// 1,000 entries × 250 status items (250,000 events), and a WASenderApi body
// of 50,000 unknown top-level keys (50,001 events), are answered 413 naming
// the limit, with nothing claimed; the peak RSS and the time are logged.
func TestHostileFanOut(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: skipped in -short mode")
	}
	p, base, admin := hostileIngress(t, "GOMEMLIMIT="+gomemlimit, "WAGATE_WASENDER_SECRET="+wasenderSecret)
	var b strings.Builder
	b.WriteString(`{"object":"whatsapp_business_account","entry":[`)
	for e := range 1000 {
		if e > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"id":"1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"1","phone_number_id":"2"},"statuses":[`)
		for i := range 250 {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`{}`)
		}
		b.WriteString(`]}}]}`)
	}
	b.WriteString(`]}`)
	var w strings.Builder
	w.WriteString(`{"event":"messages.upsert","timestamp":1750000000,"data":{}`)
	for i := range 50_000 {
		fmt.Fprintf(&w, `,"k%d":1`, i)
	}
	w.WriteString(`}`)
	for _, f := range []fixture{{provider: "cloud", body: []byte(b.String())}, {provider: "wasender", body: []byte(w.String())}} {
		req, _ := http.NewRequest(http.MethodPost, base+ingest.Route(f.provider), bytes.NewReader(f.body))
		if err := ingest.SignRequest(req.Header, f.provider, f.body, secretOf(f.provider)); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		ans, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Logf("%s: %d bytes → %d %s in %v; peak RSS so far %d MiB", f.provider, len(f.body), resp.StatusCode, bytes.TrimSpace(ans),
			time.Since(start).Round(time.Millisecond), peakRSS(t, p.cmd.Process.Pid)>>20)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !bytes.Contains(ans, []byte("over the limit of 5000 events per request")) {
			t.Errorf("%s fan-out: %d %s, want 413 naming the limit of 5000 events", f.provider, resp.StatusCode, ans)
		}
	}
	if peak := peakRSS(t, p.cmd.Process.Pid); peak >= containerLimit {
		t.Errorf("peak RSS %d MiB, want under the container's limit of %d MiB", peak>>20, containerLimit>>20)
	}
	if n := metricValue(t, admin+"/metrics", "wagate_ingest_claim_duration_seconds_count"); n != 0 {
		t.Errorf("%v claims, want none for refused bodies", n)
	}
	checkRecords(t, "ingress", p.output())
}

// A process that cannot start writes its last line as a record too.
func TestHostileStartFailureIsARecord(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: skipped in -short mode")
	}
	cmd := exec.Command(filepath.Join(binaries(t), "ingress"))
	cmd.Env = append(devEnv(), "WAGATE_LOG_FORMAT=json", "WAGATE_BODY_LIMIT=-1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatal("ingress with WAGATE_BODY_LIMIT=-1 started")
	}
	if n := checkRecords(t, "ingress", string(out)); n == 0 || !strings.Contains(string(out), "WAGATE_BODY_LIMIT") {
		t.Errorf("output %q: want one record naming WAGATE_BODY_LIMIT", out)
	}
}

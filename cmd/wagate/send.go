package main

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/wagate/wagate/ingest"
	"github.com/wagate/wagate/messages"
)

// sendSamples holds the built-in Cloud API payloads that "wagate send" posts
// when it is given no file. samples/README.md describes each one.
//
//go:embed samples/*.json
var sendSamples embed.FS

const (
	// sendDefaultURL is the ingress's Cloud API route on a local "wagate dev".
	sendDefaultURL = "http://127.0.0.1:8080/webhooks/whatsapp"
	// sendDefaultDataDir is the data directory of "wagate dev" when
	// WAGATE_DATA_DIR is unset (the same default as config.Config.DataDir).
	sendDefaultDataDir = ".wagate"
	// sendSecretsFile is the file, inside the data directory, in which
	// "wagate dev" stores the App Secret and verify token it generated.
	sendSecretsFile = "secrets.json"
	// sendBodyPreview is how much of an answer that is not the ingress's
	// counts JSON is printed.
	sendBodyPreview = 100
	// sendMaxAnswer bounds how much of an answer is read.
	sendMaxAnswer = 64 << 10
)

// sendOptions is the parsed command line of "wagate send".
type sendOptions struct {
	url         string
	secret      string
	repeat      int
	concurrency int
	timeout     time.Duration
	// devRecord is the "wagate dev" record the URL was read from, "" when
	// the URL came from --url, WAGATE_SEND_URL or the default.
	devRecord string
}

// sendPayload is one body to post, with the name it is reported under.
type sendPayload struct {
	name string
	body []byte
}

// sendCounts is the ingress's answer to an accepted request:
// {"events":N,"accepted":A,"duplicates":D}. Pointers tell a missing field
// from a zero.
type sendCounts struct {
	Events     *int   `json:"events"`
	Accepted   *int   `json:"accepted"`
	Duplicates *int   `json:"duplicates"`
	Error      string `json:"error"` // why the request was refused
}

// sendResult is the outcome of one request.
type sendResult struct {
	name    string
	code    int // HTTP status; 0 when no answer came
	err     error
	counts  *sendCounts
	body    []byte // the first bytes of an answer that is not sendCounts
	elapsed time.Duration
}

// failed reports whether the result makes the command exit non-zero.
func (r sendResult) failed() bool { return r.err != nil || r.code >= 500 }

// newSendCmd returns the "wagate send" command, which signs payload files (or
// the built-in samples) with the App Secret and posts them to an ingress. Its
// Long help is the reference for flags, defaults, output and exit status.
func newSendCmd() *cobra.Command {
	var opts sendOptions
	cmd := &cobra.Command{
		Use:   "send [file or folder]...",
		Short: "Sign payload files with the App Secret and POST them to an ingress, as Meta does",
		Long: `Sign payload files with the Meta App Secret and POST them to an ingress the
way the WhatsApp Cloud API delivers webhooks: each body is sent byte for byte
as read, with "X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>".

Arguments are files or folders. A folder sends every *.json file directly
inside it (not in subfolders), in name order. A file is sent as it is even
when it is not JSON: the ingress answers 400, and that is worth seeing.
Without arguments the built-in samples are sent: one webhook per Cloud API
inbound message type, the status updates, a batch of several events and the
non-message fields (template status, account update, phone number quality).

Flags:
  --url URL          the ingress's Cloud API route. Default: $WAGATE_SEND_URL,
                     else the webhook URL of the "wagate dev" running on
                     $WAGATE_DATA_DIR (recorded in ` + devStateFile + `), else
                     ` + sendDefaultURL + `.
  --secret SECRET    the App Secret to sign with. Default: the first secret of
                     $WAGATE_META_APP_SECRET (a comma-separated list), else
                     "app_secret" in $WAGATE_DATA_DIR/` + sendSecretsFile + ` (data dir
                     default ` + sendDefaultDataDir + `), the file "wagate dev" writes. With no
                     secret at all the command fails before sending anything.
  --repeat N         send each file N times in a row (default 1). Every copy
                     after the first should come back as duplicates.
  --concurrency N    requests in flight at once (default 1). With N > 1 the
                     copies of one file race each other, as Meta's retries can.
  --timeout D        time limit of one request, Go duration (default 10s).

Output: one line per request with the status code (ERR when no answer came),
the file, the round-trip time and the ingress's counts
"events=N accepted=A duplicates=D", or the reason it gives for refusing the
request (error "invalid signature" on a 401); when the answer is not that
JSON, its first 100 bytes instead. A summary line ends the run: requests, requests by
status code, events, accepted, duplicates.

Exit status: 0 when every request was answered below 500 (4xx answers are
reported, not failures); 1 when a request could not be sent, timed out or
was answered 5xx, and on bad arguments or a missing secret. When the URL came
from the record of a wagate dev that no longer answers, the error names the
record.`,
		Example: `  wagate send                                  # the built-in samples, once each
  wagate send --repeat 3 --concurrency 8       # duplicates, sent concurrently
  wagate send ./payloads/ retry.json --url https://ingress.example.com/webhooks/whatsapp`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SilenceUsage = true // the flags parsed: what fails from here is not the usage
			if err := opts.resolve(cmd); err != nil {
				return err
			}
			payloads, err := sendLoad(args)
			if err != nil {
				return err
			}
			return sendAll(cmd.Context(), cmd.OutOrStdout(), opts, payloads)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.url, "url", sendDefaultURL, "ingress Cloud API route (env WAGATE_SEND_URL)")
	f.StringVar(&opts.secret, "secret", "", "App Secret to sign with (default: first of $WAGATE_META_APP_SECRET, else <data dir>/"+sendSecretsFile+")")
	f.IntVar(&opts.repeat, "repeat", 1, "send each file N times")
	f.IntVar(&opts.concurrency, "concurrency", 1, "requests in flight at once")
	f.DurationVar(&opts.timeout, "timeout", 10*time.Second, "time limit of one request")
	return cmd
}

// resolve validates the flags and fills in the URL and secret from the
// environment where the flags were not given.
func (o *sendOptions) resolve(cmd *cobra.Command) error {
	if o.repeat < 1 {
		return fmt.Errorf("send: --repeat must be at least 1, got %d", o.repeat)
	}
	if o.concurrency < 1 {
		return fmt.Errorf("send: --concurrency must be at least 1, got %d", o.concurrency)
	}
	if o.timeout <= 0 {
		return fmt.Errorf("send: --timeout must be positive, got %s", o.timeout)
	}
	if !cmd.Flags().Changed("url") {
		if v := strings.TrimSpace(os.Getenv("WAGATE_SEND_URL")); v != "" {
			o.url = v
		} else if s, ok, err := readDevState(sendDataDir()); err != nil {
			return fmt.Errorf("send: %w", err)
		} else if ok {
			o.url = s.WebhookURL // the running wagate dev's, wherever it listens
			o.devRecord = filepath.Join(sendDataDir(), devStateFile)
		}
	}
	u, err := url.Parse(o.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("send: --url %q: want an http:// or https:// URL", o.url)
	}
	if o.secret == "" {
		s, err := sendSecret()
		if err != nil {
			return err
		}
		o.secret = s
	}
	return nil
}

// sendSecret finds the App Secret when --secret is not given: the first
// non-empty secret of WAGATE_META_APP_SECRET, else the one "wagate dev"
// stored in the data directory. It returns an error that says how to provide
// one when there is none.
func sendSecret() (string, error) {
	for s := range strings.SplitSeq(os.Getenv("WAGATE_META_APP_SECRET"), ",") {
		if s = strings.TrimSpace(s); s != "" {
			return s, nil
		}
	}
	file := filepath.Join(sendDataDir(), sendSecretsFile)
	raw, err := os.ReadFile(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("send: no App Secret to sign with: pass --secret, set WAGATE_META_APP_SECRET, "+
			"or run \"wagate dev\" once with the same WAGATE_DATA_DIR (it stores one in %s)", file)
	case err != nil:
		return "", fmt.Errorf("send: read the App Secret: %w", err)
	}
	var stored struct {
		AppSecret string `json:"app_secret"`
	}
	if err := json.Unmarshal(raw, &stored); err != nil {
		return "", fmt.Errorf("send: %s: %w", file, err)
	}
	if stored.AppSecret == "" {
		return "", fmt.Errorf("send: %s holds no app_secret: pass --secret or set WAGATE_META_APP_SECRET", file)
	}
	return stored.AppSecret, nil
}

// sendLoad reads the payloads named by args, or the built-in samples when
// there are none. A folder contributes its *.json files in name order.
func sendLoad(args []string) ([]sendPayload, error) {
	if len(args) == 0 {
		return sendBuiltins()
	}
	var out []sendPayload
	for _, arg := range args {
		fi, err := os.Stat(arg)
		if err != nil {
			return nil, fmt.Errorf("send: %w", err)
		}
		if !fi.IsDir() {
			body, err := os.ReadFile(arg)
			if err != nil {
				return nil, fmt.Errorf("send: %w", err)
			}
			out = append(out, sendPayload{name: arg, body: body})
			continue
		}
		entries, err := os.ReadDir(arg) // sorted by name
		if err != nil {
			return nil, fmt.Errorf("send: %w", err)
		}
		n := len(out)
		for _, e := range entries {
			if e.IsDir() || !strings.EqualFold(filepath.Ext(e.Name()), ".json") {
				continue
			}
			name := filepath.Join(arg, e.Name())
			body, err := os.ReadFile(name)
			if err != nil {
				return nil, fmt.Errorf("send: %w", err)
			}
			out = append(out, sendPayload{name: name, body: body})
		}
		if len(out) == n {
			return nil, fmt.Errorf("send: %s: no *.json file in this folder", arg)
		}
	}
	return out, nil
}

// sendBuiltins returns the embedded samples in name order.
func sendBuiltins() ([]sendPayload, error) {
	names, err := fs.Glob(sendSamples, "samples/*.json")
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	out := make([]sendPayload, 0, len(names))
	for _, name := range names {
		body, err := sendSamples.ReadFile(name)
		if err != nil {
			return nil, err
		}
		out = append(out, sendPayload{name: path.Base(name), body: body})
	}
	return out, nil
}

// sendAll posts every payload opts.repeat times, with at most
// opts.concurrency requests in flight, printing one line per request as it
// completes and a summary at the end. It returns an error when a request
// failed (no answer or a 5xx) or ctx was cancelled.
func sendAll(ctx context.Context, w io.Writer, opts sendOptions, payloads []sendPayload) error {
	total := len(payloads) * opts.repeat
	workers := min(opts.concurrency, total)

	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = workers
	client := &http.Client{Transport: transport}
	defer client.CloseIdleConnections()

	width := 0
	for _, p := range payloads {
		width = max(width, len(p.name))
	}

	var (
		mu  sync.Mutex
		sum sendSummary
	)
	jobs := make(chan *sendPayload)
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for p := range jobs {
				r := sendOne(ctx, client, opts, p)
				mu.Lock()
				sum.add(r)
				fmt.Fprintln(w, r.line(width))
				mu.Unlock()
			}
		})
	}
feed:
	for i := range payloads {
		for range opts.repeat {
			select {
			case jobs <- &payloads[i]:
			case <-ctx.Done():
				break feed
			}
		}
	}
	close(jobs)
	wg.Wait()

	fmt.Fprintln(w, sum.line(opts.url, time.Since(start)))
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("send: stopped after %d of %d requests: %w", sum.requests, total, err)
	}
	if sum.failed > 0 && sum.byCode[0] > 0 && opts.devRecord != "" {
		return fmt.Errorf("send: %d of %d requests failed (no answer or 5xx): %s comes from the wagate dev recorded in %s, which did not answer; "+
			"start wagate dev with this data folder, or pass --url (or WAGATE_SEND_URL) for another ingress", sum.failed, sum.requests, opts.url, opts.devRecord)
	}
	if sum.failed > 0 {
		return fmt.Errorf("send: %d of %d requests failed (no answer or 5xx)", sum.failed, sum.requests)
	}
	return nil
}

// sendOne posts one payload and reads the answer.
func sendOne(ctx context.Context, client *http.Client, opts sendOptions, p *sendPayload) sendResult {
	r := sendResult{name: p.name}
	ctx, cancel := context.WithTimeout(ctx, opts.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, opts.url, bytes.NewReader(p.body))
	if err != nil {
		r.err = err
		return r
	}
	req.Header.Set("Content-Type", "application/json")
	// The Cloud API's signature headers, as the ingress checks them.
	if err := ingest.SignRequest(req.Header, messages.ProviderCloud, p.body, opts.secret); err != nil {
		r.err = err
		return r
	}
	req.Header.Set("User-Agent", "wagate-send")

	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		r.elapsed = time.Since(start)
		r.err = sendCause(err, opts.timeout)
		return r
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, sendMaxAnswer))
	r.elapsed = time.Since(start)
	r.code = resp.StatusCode
	if err != nil {
		r.err = fmt.Errorf("reading the answer: %w", sendCause(err, opts.timeout))
		return r
	}
	var c sendCounts
	if json.Unmarshal(answer, &c) == nil && c.Events != nil && c.Accepted != nil && c.Duplicates != nil {
		r.counts = &c
		return r
	}
	r.body = answer[:min(len(answer), sendBodyPreview)]
	return r
}

// sendCause strips the method and URL that *url.Error repeats on every line
// and names a timeout as such.
func sendCause(err error, timeout time.Duration) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("no answer within %s (--timeout)", timeout)
	}
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}

// line formats r as one output line.
func (r sendResult) line(width int) string {
	code := "ERR"
	if r.code != 0 {
		code = strconv.Itoa(r.code)
	}
	var detail string
	switch {
	case r.err != nil:
		detail = r.err.Error()
	case r.counts != nil && r.counts.Error != "":
		detail = "error " + strconv.Quote(r.counts.Error)
		if r.code == http.StatusUnauthorized {
			detail += " (the ingress does not hold the secret this was signed with: --secret, WAGATE_META_APP_SECRET)"
		}
	case r.counts != nil:
		detail = fmt.Sprintf("events=%d accepted=%d duplicates=%d", *r.counts.Events, *r.counts.Accepted, *r.counts.Duplicates)
	default:
		detail = "body " + strconv.Quote(string(r.body))
	}
	return fmt.Sprintf("%-3s  %-*s  %7.1fms  %s", code, width, r.name, float64(r.elapsed)/float64(time.Millisecond), detail)
}

// sendSummary tallies the results of a run.
type sendSummary struct {
	requests   int
	byCode     map[int]int // HTTP status → requests; 0 = no answer
	failed     int
	events     int
	accepted   int
	duplicates int
}

func (s *sendSummary) add(r sendResult) {
	if s.byCode == nil {
		s.byCode = make(map[int]int)
	}
	s.requests++
	s.byCode[r.code]++
	if r.failed() {
		s.failed++
	}
	if r.counts != nil {
		s.events += *r.counts.Events
		s.accepted += *r.counts.Accepted
		s.duplicates += *r.counts.Duplicates
	}
}

// line formats the summary, for example
// "summary: requests=27 200=25 400=1 ERR=1 events=30 accepted=30 duplicates=0 in 41ms to http://…".
func (s *sendSummary) line(target string, elapsed time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "summary: requests=%d", s.requests)
	codes := make([]int, 0, len(s.byCode))
	for c := range s.byCode {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	for _, c := range codes {
		if c != 0 {
			fmt.Fprintf(&b, " %d=%d", c, s.byCode[c])
		}
	}
	if n := s.byCode[0]; n > 0 {
		fmt.Fprintf(&b, " ERR=%d", n)
	}
	fmt.Fprintf(&b, " events=%d accepted=%d duplicates=%d in %s to %s",
		s.events, s.accepted, s.duplicates, elapsed.Round(time.Millisecond), target)
	return b.String()
}

// sendDataDir is the data folder of "wagate dev": WAGATE_DATA_DIR, else
// sendDefaultDataDir.
func sendDataDir() string {
	if dir := os.Getenv("WAGATE_DATA_DIR"); dir != "" {
		return dir
	}
	return sendDefaultDataDir
}

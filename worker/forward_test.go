package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/wagate/wagate/internal/testenv"
	"github.com/wagate/wagate/messages"
)

// sampleEvent is an event for handler tests that need no servers.
func sampleEvent() messages.Event {
	return messages.Event{
		Key:      messages.KeyOf("cloud|message|wamid.HBgL"),
		Identity: "cloud|message|wamid.HBgL",
		Provider: messages.ProviderCloud,
		Kind:     messages.KindMessage,
		Account:  "106540352242922",
		ID:       "wamid.HBgL",
		Type:     "text",
		From:     "15550000001",
		Item:     json.RawMessage(`{ "from": "15550000001", "id": "wamid.HBgL", "text": {"body": "secret body"} }`),
	}
}

type captured struct {
	method string
	header http.Header
	body   []byte
}

func TestForwardRequest(t *testing.T) {
	var (
		mu  sync.Mutex
		got []captured
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, captured{r.Method, r.Header.Clone(), body})
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()

	f := NewForward(srv.URL+"/hook", srv.Client())
	f.Header = http.Header{"Authorization": {"Bearer s3cret"}, HeaderIdempotencyKey: {"overridden"}}
	ev := sampleEvent()
	ctx := WithRun(context.Background(), Run{Fence: 7, Delivery: 2})
	if err := f.Handle(ctx, ev); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if len(got) != 1 {
		t.Fatalf("%d requests, want 1", len(got))
	}
	req := got[0]
	want, _ := ev.Encode()
	if req.method != http.MethodPost || !bytes.Equal(req.body, want) {
		t.Errorf("%s %s, want POST %s", req.method, req.body, want)
	}
	for name, v := range map[string]string{
		"Content-Type":       "application/json",
		HeaderIdempotencyKey: ev.Key,
		HeaderFencingToken:   "7",
		HeaderDelivery:       "2",
		"Authorization":      "Bearer s3cret",
	} {
		if got := req.header.Values(name); len(got) != 1 || got[0] != v {
			t.Errorf("header %s = %q, want [%q]", name, got, v)
		}
	}

	// Without a Run (outside a worker) there is no fencing token.
	if err := f.Handle(context.Background(), ev); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if v := got[1].header.Get(HeaderFencingToken); v != "" {
		t.Errorf("fencing token %q without a Run", v)
	}
}

func TestForwardStatus(t *testing.T) {
	for _, tc := range []struct {
		code      int
		ok        bool
		permanent bool
	}{
		{200, true, false},
		{201, true, false},
		{204, true, false},
		{408, false, false},
		{429, false, false},
		{500, false, false},
		{502, false, false},
		{503, false, false},
		{400, false, true},
		{401, false, true},
		{404, false, true},
		{409, false, true},
		{422, false, true},
		{302, false, true}, // never followed: a redirected POST loses its body
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if tc.code == 302 {
				http.Redirect(w, r, "/elsewhere", tc.code)
				return
			}
			w.WriteHeader(tc.code)
			_, _ = io.WriteString(w, "answer\nbody")
		}))
		err := NewForward(srv.URL, nil).Handle(context.Background(), sampleEvent())
		// A caller's client without CheckRedirect does not follow either.
		err2 := NewForward(srv.URL, &http.Client{Timeout: 5 * time.Second}).Handle(context.Background(), sampleEvent())
		srv.Close()
		if IsPermanent(err) != IsPermanent(err2) || (err == nil) != (err2 == nil) {
			t.Errorf("%d: default client %v, caller's client %v", tc.code, err, err2)
		}
		if tc.ok {
			if err != nil {
				t.Errorf("%d: %v, want nil", tc.code, err)
			}
			continue
		}
		var se *StatusError
		if !errors.As(err, &se) || se.StatusCode != tc.code {
			t.Errorf("%d: error %v, want a *StatusError with the code", tc.code, err)
			continue
		}
		if IsPermanent(err) != tc.permanent {
			t.Errorf("%d: IsPermanent = %v, want %v (%v)", tc.code, IsPermanent(err), tc.permanent, err)
		}
		if tc.code != 302 && !strings.Contains(err.Error(), "answer body") {
			t.Errorf("%d: error %q lacks the body", tc.code, err)
		}
	}
}

func TestForwardTimeoutRetries(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)

	// The client's timeout.
	client := &http.Client{Timeout: 100 * time.Millisecond}
	err := NewForward(srv.URL, client).Handle(context.Background(), sampleEvent())
	if err == nil || IsPermanent(err) {
		t.Errorf("client timeout: %v, want a retryable error", err)
	}
	// The handler's context (lock lost, shutdown, HandlerTimeout).
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = NewForward(srv.URL, nil).Handle(ctx, sampleEvent())
	if !errors.Is(err, context.DeadlineExceeded) || IsPermanent(err) {
		t.Errorf("context deadline: %v, want a retryable error wrapping DeadlineExceeded", err)
	}
}

func TestForwardNetworkErrorRetries(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	err := NewForward(url, nil).Handle(context.Background(), sampleEvent())
	if err == nil || IsPermanent(err) {
		t.Errorf("connection refused: %v, want a retryable error", err)
	}
}

func TestForwardBadInputIsPermanent(t *testing.T) {
	if err := NewForward("://bad url", nil).Handle(context.Background(), sampleEvent()); !IsPermanent(err) {
		t.Errorf("bad URL: %v, want permanent", err)
	}
	ev := sampleEvent()
	ev.Item = json.RawMessage(`{not json`)
	if err := NewForward("http://127.0.0.1:1/", nil).Handle(context.Background(), ev); !IsPermanent(err) {
		t.Errorf("unencodable event: %v, want permanent", err)
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent use, for captured logs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Many endpoints answer an error with the request they refused (validation
// pages, debug handlers). The worker's logs must not carry that answer: it
// holds the event, with the sender's phone number and the message text. The
// dead letter may keep it (it holds the event anyway).
func TestForwardErrorAnswerNotLogged(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusUnprocessableEntity)
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	sc := testStreams()
	e := newEnv(t, sc, "")
	var logs lockedBuffer
	e.start(Config{Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))},
		NewForward(srv.URL, nil))
	ev := e.event()
	e.publish(ev)
	testenv.Eventually(t, wait, func() bool { return len(e.dlq()) == 1 }, "event not dead-lettered")
	for _, leak := range []string{"15550000001", "secret body"} {
		if strings.Contains(logs.String(), leak) {
			t.Errorf("worker logs hold %q:\n%s", leak, logs.String())
		}
	}
	if reason := e.dlq()[0].Header.Get(HeaderError); !strings.Contains(reason, "422") {
		t.Errorf("dead letter's error %q lacks the status", reason)
	}
}

// slowApp is an application behind forward that takes delay to answer 200,
// unless the request is given up first; it counts the requests it got.
type slowApp struct {
	delay    time.Duration
	requests atomic.Int32
}

func (a *slowApp) RoundTrip(r *http.Request) (*http.Response, error) {
	a.requests.Add(1)
	select {
	case <-time.After(a.delay):
		return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Request: r}, nil
	case <-r.Context().Done():
		return nil, r.Context().Err()
	}
}

// An application that takes 35 s (an LLM reply, a slow CRM) gets one request
// under the default timeout and answers it; one slower than the timeout gets
// a retryable error, not a permanent one (the worker retries it after its
// backoff). Runs on synctest's fake clock.
func TestForwardDefaultTimeoutCoversSlowApps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		app := &slowApp{delay: 35 * time.Second}
		f := NewForward("http://app.invalid/hook", &http.Client{Timeout: DefaultForwardTimeout, Transport: app})
		start := time.Now()
		if err := f.Handle(context.Background(), sampleEvent()); err != nil {
			t.Fatalf("35 s application: %v", err)
		}
		if n := app.requests.Load(); n != 1 || time.Since(start) != 35*time.Second {
			t.Errorf("%d requests in %v, want 1 in 35s", n, time.Since(start))
		}

		slow := &slowApp{delay: DefaultForwardTimeout + time.Minute}
		f = NewForward("http://app.invalid/hook", &http.Client{Timeout: DefaultForwardTimeout, Transport: slow})
		err := f.Handle(context.Background(), sampleEvent())
		if err == nil || IsPermanent(err) {
			t.Errorf("application slower than the timeout: %v, want a retryable error", err)
		}
	})
}

package main

import (
	crand "crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/wagate/wagate/ingest"
)

// Account fields of every generated webhook: one business number.
const (
	benchWABA          = "200000000000001"
	benchPhoneNumberID = "100000000000001"
	benchDisplayNumber = "15550000100"
)

// historySize is how many recent bodies a workload remembers for re-sends.
// A re-send picks one of them at random, except the recentSkip newest, which
// may still be in flight.
const (
	historySize = 1024
	recentSkip  = 32
)

// body is one signed webhook body.
type body struct {
	data []byte
	sig  string
}

// workload makes Cloud API webhook bodies of text messages: perBody events
// each, every event with a wamid of its own, except that a fraction dup of
// the bodies are earlier bodies sent again, as Meta does when it retries a
// delivery. It is safe for concurrent use.
type workload struct {
	perBody int
	dup     float64
	secret  string
	// stamp writes the time of making into each message's text, so that a
	// handler can tell how long after the provider's request it ran.
	stamp bool

	nonce string        // 8 hex digits, unique per workload
	seq   atomic.Uint64 // events made so far
	n     atomic.Uint64 // bodies handed out so far

	mu      sync.Mutex
	history []body
	head    int
}

// newWorkload returns a workload of perBody events per body, with a
// fraction dup (0 to 1) of re-sends, signed with secret.
func newWorkload(perBody int, dup float64, secret string, stamp bool) *workload {
	var b [4]byte
	_, _ = crand.Read(b[:])
	return &workload{perBody: perBody, dup: dup, secret: secret, stamp: stamp, nonce: hex.EncodeToString(b[:])}
}

// next returns the next body: a new one, or (a fraction dup of the time,
// once enough bodies were made) an earlier one again.
func (w *workload) next() body {
	n := w.n.Add(1)
	if w.isResend(n) {
		w.mu.Lock()
		if k := len(w.history); k > recentSkip {
			// history[head-1] is the newest when full, history[k-1] before.
			newest := k - 1
			if k == historySize {
				newest = (w.head + historySize - 1) % historySize
			}
			back := recentSkip + rand.IntN(k-recentSkip)
			b := w.history[(newest-back+historySize)%historySize]
			w.mu.Unlock()
			return b
		}
		w.mu.Unlock()
	}
	data := w.make(time.Now())
	b := body{data: data, sig: ingest.Sign(data, w.secret)}
	w.mu.Lock()
	if len(w.history) < historySize {
		w.history = append(w.history, b)
	} else {
		w.history[w.head] = b
		w.head = (w.head + 1) % historySize
	}
	w.mu.Unlock()
	return b
}

// isResend spreads the re-sends evenly: body n is one when the count of
// re-sends due by n grows at n.
func (w *workload) isResend(n uint64) bool {
	if w.dup <= 0 {
		return false
	}
	return uint64(float64(n)*w.dup) > uint64(float64(n-1)*w.dup)
}

// targeter returns a vegeta targeter posting the workload's bodies to url,
// signed as Meta signs them.
func (w *workload) targeter(url string) vegeta.Targeter {
	return func(t *vegeta.Target) error {
		b := w.next()
		t.Method = http.MethodPost
		t.URL = url
		t.Body = b.data
		t.Header = http.Header{
			"Content-Type":         {"application/json"},
			ingest.HeaderSignature: {b.sig},
		}
		return nil
	}
}

// make returns a new body of w.perBody text messages with new wamids.
func (w *workload) make(now time.Time) []byte {
	first := w.seq.Add(uint64(w.perBody)) - uint64(w.perBody)
	b := make([]byte, 0, 320+w.perBody*400)
	b = append(b, `{"object":"whatsapp_business_account","entry":[{"id":"`+benchWABA+`","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"`+benchDisplayNumber+`","phone_number_id":"`+benchPhoneNumberID+`"},"contacts":[`...)
	for i := range w.perBody {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"profile":{"name":"Customer `...)
		b = strconv.AppendUint(b, first+uint64(i), 10)
		b = append(b, `"},"wa_id":"`...)
		b = appendPhone(b, first+uint64(i))
		b = append(b, `"}`...)
	}
	b = append(b, `],"messages":[`...)
	for i := range w.perBody {
		seq := first + uint64(i)
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"from":"`...)
		b = appendPhone(b, seq)
		b = append(b, `","id":"`...)
		b = append(b, wamid(w.nonce, seq)...)
		b = append(b, `","timestamp":"`...)
		b = strconv.AppendInt(b, now.Unix(), 10)
		b = append(b, `","type":"text","text":{"body":"Hello! Is the shop open on Saturday? Order `...)
		b = strconv.AppendUint(b, seq, 10)
		if w.stamp {
			b = append(b, ` t=`...)
			b = strconv.AppendInt(b, now.UnixNano(), 10)
		}
		b = append(b, `"}}`...)
	}
	b = append(b, `]},"field":"messages"}]}]}`...)
	return b
}

// appendPhone appends an 11-digit sender number derived from seq.
func appendPhone(b []byte, seq uint64) []byte {
	b = append(b, "1555"...)
	s := strconv.AppendUint(make([]byte, 0, 8), seq%10_000_000, 10)
	for range 7 - len(s) {
		b = append(b, '0')
	}
	return append(b, s...)
}

// wamid returns a wamid shaped like Meta's: "wamid." and the base64 of a
// small protobuf holding the sender's number and a 20-character hex message
// id, 62 characters in all, as in messages/testdata. nonce and seq make it
// unique.
func wamid(nonce string, seq uint64) string {
	raw := make([]byte, 0, 41)
	raw = append(raw, 0x1c, 0x18, 0x0b)
	raw = appendPhone(raw, seq)
	raw = append(raw, 0x15, 0x02, 0x00, 0x11, 0x18, 0x14)
	id := strconv.AppendUint(make([]byte, 0, 12), seq, 16)
	raw = append(raw, nonce...)
	for range 12 - len(id) {
		raw = append(raw, '0')
	}
	raw = append(raw, id...)
	raw = append(raw, 0x00)
	return "wamid." + base64.StdEncoding.EncodeToString(raw)
}

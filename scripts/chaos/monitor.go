package chaos

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Mark is one state write of the dedupe store seen by Redis MONITOR, inside
// the store's Lua scripts: a Begin (the state records a lock taken with a new
// fencing number) or a done mark (written by Finish).
type Mark struct {
	Key   string    // the event's dedupe key
	Done  bool      // a done mark; else a Begin
	Fence int64     // the fencing number the state records
	At    time.Time // Redis's clock (the same host's clock as the sink's)
}

// Monitor records every Begin and done mark Redis executes, from a MONITOR
// connection that it re-opens whenever Redis restarts. Commands Redis
// executes while no MONITOR connection is open are not seen: Gaps counts the
// reconnections.
type Monitor struct {
	addr string

	mu    sync.Mutex
	marks []Mark
	gaps  int
	conn  net.Conn
	stop  bool
	done  chan struct{}
	ready chan struct{} // closed once the first MONITOR connection is open
}

// StartMonitor starts recording the Redis at addr (host:port).
func StartMonitor(addr string) *Monitor {
	m := &Monitor{addr: addr, done: make(chan struct{}), ready: make(chan struct{})}
	go m.loop()
	return m
}

// WaitReady waits until the first MONITOR connection is open, or ctx ends.
func (m *Monitor) WaitReady(ctx context.Context) error {
	select {
	case <-m.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("redis MONITOR on %s: %w", m.addr, ctx.Err())
	}
}

// Close stops recording and waits for the reader.
func (m *Monitor) Close() {
	m.mu.Lock()
	m.stop = true
	if m.conn != nil {
		m.conn.Close()
	}
	m.mu.Unlock()
	<-m.done
}

// Marks returns what was recorded so far, in Redis's order.
func (m *Monitor) Marks() []Mark {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Mark(nil), m.marks...)
}

// Gaps counts the times the MONITOR connection was lost and opened again.
func (m *Monitor) Gaps() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.gaps
}

func (m *Monitor) loop() {
	defer close(m.done)
	first := true
	for {
		m.mu.Lock()
		stop := m.stop
		m.mu.Unlock()
		if stop {
			return
		}
		conn, err := net.DialTimeout("tcp", m.addr, 100*time.Millisecond)
		if err != nil {
			time.Sleep(2 * time.Millisecond) // Redis is down: try again at once
			continue
		}
		m.mu.Lock()
		if m.stop {
			m.mu.Unlock()
			conn.Close()
			return
		}
		m.conn = conn
		m.mu.Unlock()
		m.read(conn, func() {
			if first {
				close(m.ready)
			} else {
				m.mu.Lock()
				m.gaps++
				m.mu.Unlock()
			}
			first = false
		})
		conn.Close()
	}
}

// scriptSet matches a SET of a state value run by a Lua script, in either
// layout of the Redis store (dedupe.Redis): "<fence>1" (Accepted with the
// fencing number a Begin issued) and "<fence>2" (Done), or the earlier
// "a<fence>" and "d<fence>":
//
//	1796033245.982399 [0 lua] "SET" "wa:…" "32" "KEEPTTL"
var scriptSet = regexp.MustCompile(`^\+?(\d+)\.(\d{6}) \[\d+ lua\] "SET" "([^"]+)" "([ad]?)(\d+)"`)

// parseMark reads a MONITOR line; ok is false for a line that is not a
// Begin or a done mark.
func parseMark(line string) (mk Mark, ok bool) {
	g := scriptSet.FindStringSubmatch(line)
	if g == nil || strings.HasSuffix(g[3], ":l") { // a lock, not a state
		return Mark{}, false
	}
	sec, _ := strconv.ParseInt(g[1], 10, 64)
	usec, _ := strconv.ParseInt(g[2], 10, 64)
	n, err := strconv.ParseInt(g[5], 10, 64)
	if err != nil {
		return Mark{}, false
	}
	mk = Mark{Key: g[3], At: time.Unix(sec, usec*1000)}
	switch g[4] {
	case "a":
		mk.Fence = n
	case "d":
		mk.Done, mk.Fence = true, n
	default:
		switch n % 10 {
		case 1:
			mk.Fence = n / 10
		case 2:
			mk.Done, mk.Fence = true, n/10
		default:
			return Mark{}, false
		}
	}
	if mk.Fence < 1 {
		return Mark{}, false // Accept's "1" or "a": no lock taken
	}
	return mk, true
}

func (m *Monitor) read(conn net.Conn, opened func()) {
	if _, err := conn.Write([]byte("MONITOR\r\n")); err != nil {
		return
	}
	r := bufio.NewReaderSize(conn, 1<<16)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
		return
	}
	opened()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if !strings.Contains(line, " lua] \"SET\"") {
			continue
		}
		mk, ok := parseMark(line)
		if !ok {
			continue
		}
		m.mu.Lock()
		m.marks = append(m.marks, mk)
		m.mu.Unlock()
	}
}

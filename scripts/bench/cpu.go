package main

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// numCPU is the number of processors.
func numCPU() int { return runtime.NumCPU() }

// clockTicks is the unit of /proc CPU times: USER_HZ, 100 on Linux.
const clockTicks = 100

// CPU is where the machine's processors went during a run, in cores (CPU
// seconds per second of the run).
type CPU struct {
	// Machine is every process's use, from /proc/stat.
	Machine float64 `json:"machine_cores"`
	// Procs is the use of each process of the run: "bench" (this program:
	// the load generator, the bare loop, the worker), "ingress", "redis",
	// "nats-server", "echo".
	Procs map[string]float64 `json:"process_cores"`
	// Seconds is the length of the measurement.
	Seconds float64 `json:"seconds"`
}

// Other is the machine's use by processes outside the run, in cores.
func (c *CPU) Other() float64 {
	if c == nil {
		return 0
	}
	ours := 0.0
	for _, v := range c.Procs {
		ours += v
	}
	return max(0, c.Machine-ours)
}

// PerEvent returns the CPU time of our processes per event, in
// microseconds: their total, then each one's.
func (c *CPU) PerEvent(events int) (total float64, each map[string]float64) {
	each = map[string]float64{}
	if c == nil || events <= 0 {
		return 0, each
	}
	for n, cores := range c.Procs {
		us := cores * c.Seconds / float64(events) * 1e6
		if us >= 0.5 {
			each[n] = us
		}
		total += us
	}
	return total, each
}

// perEventString formats PerEvent.
func (c *CPU) perEventString(events int) string {
	total, each := c.PerEvent(events)
	names := make([]string, 0, len(each))
	for n := range each {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return each[names[i]] > each[names[j]] })
	var b strings.Builder
	fmt.Fprintf(&b, "%.0f µs (", total)
	for i, n := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %.0f", n, each[n])
	}
	b.WriteString(")")
	return b.String()
}

// String lists the processes by decreasing use, then the machine's.
func (c *CPU) String() string {
	if c == nil {
		return ""
	}
	names := make([]string, 0, len(c.Procs))
	for n := range c.Procs {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return c.Procs[names[i]] > c.Procs[names[j]] })
	var b strings.Builder
	for _, n := range names {
		if c.Procs[n] >= 0.005 {
			fmt.Fprintf(&b, "%s %.2f, ", n, c.Procs[n])
		}
	}
	fmt.Fprintf(&b, "other processes %.2f (machine %.2f of %d)", c.Other(), c.Machine, numCPU())
	return b.String()
}

// cpuMeter measures CPU use between its start and stop.
type cpuMeter struct {
	pids        map[string]int
	ticks       map[string]uint64
	busy, total uint64
	began       time.Time
}

// startCPU starts measuring the processes pids (name to pid).
func startCPU(pids map[string]int) *cpuMeter {
	m := &cpuMeter{pids: pids, ticks: map[string]uint64{}, began: time.Now()}
	for n, pid := range pids {
		m.ticks[n], _ = procTicks(pid)
	}
	m.busy, m.total, _ = machineTicks()
	return m
}

// stop returns the use since start.
func (m *cpuMeter) stop() *CPU {
	secs := time.Since(m.began).Seconds()
	c := &CPU{Procs: map[string]float64{}, Seconds: secs}
	if secs <= 0 {
		return c
	}
	for n, pid := range m.pids {
		if t, err := procTicks(pid); err == nil {
			c.Procs[n] = float64(t-m.ticks[n]) / clockTicks / secs
		}
	}
	if busy, total, err := machineTicks(); err == nil && total > m.total {
		c.Machine = float64(busy-m.busy) / float64(total-m.total) * float64(numCPU())
	}
	return c
}

// procTicks returns a process's user and system time, in clock ticks.
func procTicks(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name, field 2, may hold spaces: count from its ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return u + st, nil
}

// machineTicks returns the busy and total ticks of all processors, from
// the "cpu" line of /proc/stat.
func machineTicks() (busy, total uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("malformed /proc/stat")
	}
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("malformed /proc/stat: %w", err)
		}
		if i >= 7 { // steal, guest, guest_nice: not ours
			break
		}
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total, nil
}

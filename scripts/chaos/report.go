package chaos

import (
	"fmt"
	"strings"
	"sync"
	"text/tabwriter"
)

// Results collects the ledger of every scenario of a test run, for the
// table. It is safe for concurrent use.
type Results struct {
	mu   sync.Mutex
	rows []Result
}

// Add records one scenario's ledger.
func (rs *Results) Add(r Result) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.rows = append(rs.rows, r)
}

// Len is the number of scenarios recorded.
func (rs *Results) Len() int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return len(rs.rows)
}

// Table renders one row per scenario.
func (rs *Results) Table() string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "scenario\trequests\tevents\t2xx answered\tforwarded\tdead-lettered\tduplicates suppressed\tlost\toverlapping runs\tre-runs after done\tre-runs after crash\tseconds\t")
	for _, r := range rs.rows {
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.1f\t\n",
			r.Scenario, r.Requests, r.Events, r.Answered, r.Forwarded, r.DeadLettered, r.DupSuppressed,
			r.Lost, r.Overlaps, r.RerunsAfterDone, r.RerunsAfterCrash, r.Seconds)
	}
	w.Flush()
	return b.String()
}

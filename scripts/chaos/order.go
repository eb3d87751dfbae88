package chaos

import (
	"fmt"
	"slices"
)

// CheckOrder checks WAGATE_ORDER=conversation from what the sink saw: in
// every conversation, the keys forwarded, in the order their forwards
// arrived, are the keys of the events stream in stream order, each run once
// or run again at once (a re-run after a crash, before the next event of the
// conversation). Events never forwarded (dead-lettered undecodable) are
// left out of the stream's order. It returns one line per conversation out
// of order, and how many conversations it checked.
func CheckOrder(o Observed) (problems []string, checked int) {
	convOf := map[string]string{}
	for conv, keys := range o.Conversations {
		for _, k := range keys {
			convOf[k] = conv
		}
	}
	runs := slices.Clone(o.Runs)
	slices.SortFunc(runs, func(a, b Run) int { return a.ID - b.ID })
	forwarded := map[string][]string{}
	seen := map[string]bool{}
	for _, r := range runs {
		conv, ok := convOf[r.Key]
		if !ok || r.Outcome == RunBad {
			continue
		}
		forwarded[conv] = append(forwarded[conv], r.Key)
		seen[r.Key] = true
	}
	for conv, keys := range o.Conversations {
		want := slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return !seen[k] })
		got := slices.Compact(forwarded[conv])
		checked++
		if !slices.Equal(got, want) {
			first := 0
			for first < min(len(got), len(want)) && got[first] == want[first] {
				first++
			}
			problems = append(problems, fmt.Sprintf("conversation %s: %d forwards, %d events; first difference at %d", conv, len(got), len(want), first))
		}
	}
	return problems, checked
}

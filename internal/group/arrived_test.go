package group

import (
	"slices"
	"testing"
)

func TestArrivedGroupsWhatIsWaiting(t *testing.T) {
	c := make(chan int, 8)
	c <- 1
	c <- 2
	c <- 3
	var got [][]int
	for g := range Arrived(c) {
		got = append(got, g)
		switch len(got) {
		case 1:
			// Sent while the first group was handled: the next group.
			c <- 4
			c <- 5
		case 2:
			c <- 6
			close(c)
		}
	}
	want := [][]int{{1, 2, 3}, {4, 5}, {6}}
	if !slices.EqualFunc(got, want, slices.Equal[[]int]) {
		t.Errorf("groups %v, want %v", got, want)
	}
}

func TestArrivedStopsWhenTheLoopDoes(t *testing.T) {
	c := make(chan int, 4)
	c <- 1
	for range Arrived(c) {
		c <- 2 // left in c for whoever reads next
		break
	}
	if v := <-c; v != 2 {
		t.Errorf("next value %d, want 2", v)
	}
}

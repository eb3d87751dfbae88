package group

import "iter"

// Arrived yields the values of c in groups: each group holds the first value
// to arrive and every other one already waiting in c, so that a group never
// waits for a value that has not come. It ends when c is closed, or when the
// loop over it stops.
func Arrived[T any](c <-chan T) iter.Seq[[]T] {
	return func(yield func([]T) bool) {
		for v := range c {
			group := []T{v}
		more:
			for {
				select {
				case v, ok := <-c:
					if !ok {
						break more
					}
					group = append(group, v)
				default:
					break more
				}
			}
			if !yield(group) {
				return
			}
		}
	}
}

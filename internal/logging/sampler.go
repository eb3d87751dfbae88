package logging

import (
	"sync/atomic"

	"golang.org/x/time/rate"
)

// DefaultSampleRate is the default of a Sampler's lines per second, with an
// equal burst.
const DefaultSampleRate = 10

// Sampler lets through at most a fixed number of lines per second of one
// kind (refused requests, duplicates): the kinds any outsider can cause at
// will, which must never fill a disk. The lines it holds back are counted,
// and the next line let through says how many (Allow's second result);
// metrics count every one. The zero value is not usable: see NewSampler. A
// nil *Sampler lets every line through. Safe for concurrent use.
type Sampler struct {
	lim     *rate.Limiter
	dropped atomic.Int64
}

// NewSampler returns a Sampler letting through perSecond lines per second,
// with bursts of as many. perSecond 0 means DefaultSampleRate; a negative
// perSecond returns nil, which lets every line through.
func NewSampler(perSecond int) *Sampler {
	if perSecond < 0 {
		return nil
	}
	if perSecond == 0 {
		perSecond = DefaultSampleRate
	}
	return &Sampler{lim: rate.NewLimiter(rate.Limit(perSecond), perSecond)}
}

// Allow reports whether a line may be written now and, when it may, how many
// lines were held back since the last one let through.
func (s *Sampler) Allow() (ok bool, suppressed int64) {
	if s == nil {
		return true, 0
	}
	if !s.lim.Allow() {
		s.dropped.Add(1)
		return false, 0
	}
	return true, s.dropped.Swap(0)
}

package agentsvc

import (
	"net"
	"sync"
	"time"
)

// AdmissionListener accepts at most rate connections per second (bursts up to burst).
// When a replica restarts, thousands of agents reconnect at once; each costs a TLS
// handshake. Agents already spread their retries with jitter; this bounds what the
// replica takes on regardless, by simply accepting more slowly: waiting clients sit in the
// kernel's accept queue or time out and retry with backoff, and established streams are
// never affected.
func AdmissionListener(ln net.Listener, rate float64, burst int) net.Listener {
	if rate <= 0 {
		return ln
	}
	return &admissionListener{Listener: ln, rate: rate, burst: float64(max(burst, 1)), tokens: float64(max(burst, 1)), last: time.Now()}
}

type admissionListener struct {
	net.Listener
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func (l *admissionListener) Accept() (net.Conn, error) {
	if wait := l.take(); wait > 0 {
		time.Sleep(wait) // pacing is the point: the token bucket refills at rate
	}
	return l.Listener.Accept()
}

// take spends a token, returning how long to wait first when none is left.
func (l *admissionListener) take() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	l.last = now
	l.tokens--
	if l.tokens >= 0 {
		return 0
	}
	return time.Duration(-l.tokens / l.rate * float64(time.Second))
}

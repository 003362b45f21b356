package agentsvc

import (
	"testing"
	"time"
)

// TestAdmissionPacing checks the token bucket's arithmetic without a clock-dependent
// assertion: after the burst, each further connection waits about 1/rate more.
func TestAdmissionPacing(t *testing.T) {
	l := &admissionListener{rate: 100, burst: 3, tokens: 3, last: time.Now()}
	for i := range 3 {
		if w := l.take(); w != 0 {
			t.Fatalf("connection %d inside the burst waited %v", i, w)
		}
	}
	l.last = time.Now() // no refill between the next calls
	w1 := l.take()
	l.last = time.Now()
	w2 := l.take()
	if w1 <= 0 || w2 <= w1 {
		t.Fatalf("waits after the burst: %v then %v; want growing positive waits", w1, w2)
	}
	if w2 > 50*time.Millisecond {
		t.Fatalf("second wait %v; want about 20 ms at 100/s", w2)
	}
	if got := AdmissionListener(nil, 0, 0); got != nil {
		t.Fatal("rate 0 must leave the listener alone")
	}
}

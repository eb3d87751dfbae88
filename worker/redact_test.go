package worker

import (
	"context"
	"net"
	"strings"
	"testing"
)

// A token in the forward URL's query or user information never reaches the
// error a Nak warning logs and a dead letter stores (Wagate-Error).
func TestForwardErrorRedactsURL(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused
	f := NewForward("http://user:pa55word@"+addr+"/hook?token=s3cret-token&x=1", nil)
	err = f.Handle(context.Background(), sampleEvent())
	if err == nil {
		t.Fatal("forward to a closed port succeeded")
	}
	for _, secret := range []string{"pa55word", "s3cret-token"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q holds %q", err, secret)
		}
	}
	if !strings.Contains(err.Error(), addr+"/hook?") {
		t.Errorf("error %q: want the host and path kept", err)
	}
	reason := oneLine(err.Error(), maxReason)
	if strings.Contains(reason, "s3cret") {
		t.Errorf("dead-letter reason %q holds the token", reason)
	}
}

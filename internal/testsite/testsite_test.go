package testsite

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestUpstreamRecords(t *testing.T) {
	up := NewUpstream(t, OK)
	req, _ := http.NewRequest(http.MethodGet, up.URL+"/app?x=1", nil)
	req.Header["X_Auth_Request_Email"] = []string{"a@example.com"}
	req.Header.Set("X-Auth-Request-User", "alice")
	req.AddCookie(&http.Cookie{Name: "a", Value: "1"})
	req.AddCookie(&http.Cookie{Name: "b", Value: "2"})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || up.Count() != 1 {
		t.Fatalf("status %d, %d requests recorded", resp.StatusCode, up.Count())
	}
	last := up.Last(t)
	if last.URI != "/app?x=1" {
		t.Errorf("URI %q", last.URI)
	}
	if got := strings.Join(last.CookieNames(), ","); got != "a,b" {
		t.Errorf("CookieNames() = %q", got)
	}
	auth := last.AuthHeaders()
	if len(auth) != 2 || auth["x-auth-request-email"][0] != "a@example.com" || auth["x-auth-request-user"][0] != "alice" {
		t.Errorf("AuthHeaders() = %v", auth)
	}
	if got := last.HeaderValues("x-auth-request-email"); len(got) != 1 || got[0] != "a@example.com" {
		t.Errorf("HeaderValues() = %q", got)
	}
}

func TestUsersFile(t *testing.T) {
	path := UsersFile(t, User{Login: "alice", Password: "pw", Name: "Alice Example", Email: "alice@example.com"})
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Split(strings.TrimSuffix(string(b), "\n"), ":")
	if len(f) != 4 || f[0] != "alice" || !strings.HasPrefix(f[1], "$2a$04$") || f[2] != "Alice Example" || f[3] != "alice@example.com" {
		t.Errorf("users file %q", b)
	}
	if got := CredentialsProvider(path); !strings.Contains(got, "users_file "+path+"\n") {
		t.Errorf("CredentialsProvider = %q", got)
	}
}

func TestLogCount(t *testing.T) {
	logs := "a b c\nb c\n\nc\n"
	for parts, want := range map[string]int{"": 3, "c": 3, "b c": 2, "a": 1, "d": 0} {
		if got := LogCount(logs, strings.Fields(parts)...); got != want {
			t.Errorf("LogCount(%q) = %d, want %d", parts, got, want)
		}
	}
}

func TestEventually(t *testing.T) {
	n := 0
	took := Eventually(t, time.Minute, "the third call", func() error {
		if n++; n < 3 {
			return errors.New("too early")
		}
		return nil
	})
	if n != 3 || took <= 0 {
		t.Errorf("Eventually returned after %d calls (%v), want 3", n, took)
	}

	// A state that never comes fails the test, with the last reason.
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Eventually(r, 30*time.Millisecond, "never", func() error { return errors.New("not yet") })
	}()
	<-done
	if !strings.Contains(r.fatal, "never: still not so after 30ms: not yet") {
		t.Errorf("failure %q", r.fatal)
	}
}

// recorder is a testing.TB whose Fatalf records the message and ends the
// goroutine, as t.Fatalf would.
type recorder struct {
	testing.TB
	fatal string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

package httpjson

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const testLimit = 64

func serve(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

func answer(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func get(t *testing.T, s *httptest.Server, v any) (int, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	return Do(s.Client(), req, testLimit, v)
}

func TestDo(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   string // "" for success, else a part of the error
		decode bool   // the error wraps ErrDecode
	}{
		{"object", 200, `{"a":"b"}`, "", false},
		{"created", 201, `{"a":"b"}`, "", false},
		{"trailing whitespace", 200, "{\"a\":\"b\"}\n", "", false},
		{"exactly the limit", 200, `{"a":"` + strings.Repeat("x", testLimit-8) + `"}`, "", false},
		{"one byte over the limit", 200, `{"a":"` + strings.Repeat("x", testLimit-7) + `"}`, "answer larger than 64 bytes", false},
		{"padded over the limit", 200, `{"a":"b"}` + strings.Repeat(" ", testLimit), "larger than", false},
		{"server error", 500, `{"a":"b"}`, "status 500", false},
		{"unauthorized", 401, `{"a":"b"}`, "status 401", false},
		{"redirect", 302, ``, "status 302", false},
		{"not JSON", 200, `a=b`, "decoding the answer", true},
		{"empty", 200, ``, "decoding the answer", true},
		{"two values", 200, `{"a":"b"} {"a":"c"}`, "decoding the answer", true},
		{"wrong shape", 200, `["b"]`, "decoding the answer", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v map[string]string
			status, err := get(t, serve(t, answer(tc.status, tc.body)), &v)
			if status != tc.status {
				t.Errorf("status %d, want %d", status, tc.status)
			}
			if tc.want == "" {
				if err != nil || v["a"] == "" {
					t.Errorf("Do = %v, %v; want the object", v, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Do error %v, want one saying %q", err, tc.want)
			}
			if errors.Is(err, ErrDecode) != tc.decode {
				t.Errorf("errors.Is(%v, ErrDecode) = %v", err, !tc.decode)
			}
			if v != nil {
				t.Errorf("decoded %v from a refused answer", v)
			}
		})
	}
}

// An endless body is cut at the limit, not read to the end.
func TestDoEndless(t *testing.T) {
	s := serve(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"a":"`)
		chunk := []byte(strings.Repeat("x", 1024))
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	var v map[string]string
	_, err := get(t, s, &v)
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Do error %v, want the limit", err)
	}
}

// Transport errors leave the URL out (the caller names the call) and keep the
// cause for errors.Is.
func TestDoTransportError(t *testing.T) {
	s := serve(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(2 * time.Second):
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, nil)
	var v any
	status, err := Do(s.Client(), req, testLimit, &v)
	if status != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Do = %d, %v; want 0 and a deadline error", status, err)
	}
	if strings.Contains(err.Error(), s.URL) {
		t.Errorf("error %q names the URL", err)
	}
}

func TestDoAccept(t *testing.T) {
	var got []string
	s := serve(t, func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Accept"))
		io.WriteString(w, `{}`)
	})
	var v any
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, s.URL, nil)
	if _, err := Do(s.Client(), req, testLimit, &v); err != nil {
		t.Fatal(err)
	}
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodGet, s.URL, nil)
	req.Header.Set("Accept", "application/vnd.github+json")
	if _, err := Do(s.Client(), req, testLimit, &v); err != nil {
		t.Fatal(err)
	}
	if want := []string{"application/json", "application/vnd.github+json"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("Accept headers %q, want %q", got, want)
	}
}

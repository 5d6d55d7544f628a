package handlers

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authgate/caddy-authgate/store"
)

// instrumented is benchRealm with its metrics in a registry of its own.
func instrumented(t *testing.T) (*realm, *prometheus.Registry) {
	t.Helper()
	rl := benchRealm(t, nil)
	reg := prometheus.NewPedanticRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if rl.metrics, err = m.forRealm(rl); err != nil {
		t.Fatal(err)
	}
	rl.sessions.store = rl.metrics.countStoreErrors(rl.sessions.store)
	return rl, reg
}

// metricValue is the value of the series name{labels} in reg (0 when absent).
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

// The guard's counters cost no allocation: a guarded request allocates as
// much with metrics as without, and a decision or a cache lookup alone
// allocates nothing.
func TestMetricsCostNoAllocation(t *testing.T) {
	plain := benchRealm(t, nil)
	counted, reg := instrumented(t)
	allocs := func(rl *realm) float64 {
		h := benchHandler(t, rl, &Handler{})
		c := sessionCookie(t, rl, aliceClaims)
		w := &discard{h: http.Header{}}
		return testing.AllocsPerRun(200, func() {
			clear(w.h)
			if err := h.ServeHTTP(w, benchRequest(c), noop); err != nil {
				t.Fatal(err)
			}
		})
	}
	if without, with := allocs(plain), allocs(counted); with > without {
		t.Errorf("a guarded request allocates %v times with metrics, %v without", with, without)
	}
	if n := metricValue(t, reg, "caddy_authgate_requests_total", map[string]string{"realm": "default", "decision": "allowed"}); n < 200 {
		t.Errorf("requests_total{decision=allowed} = %v after 200+ allowed requests", n)
	}
	if n := metricValue(t, reg, "caddy_authgate_token_cache_hits_total", nil); n < 200 {
		t.Errorf("token_cache_hits_total = %v after 200+ cached lookups", n)
	}
	if n := testing.AllocsPerRun(100, func() { counted.metrics.decide(decisionForbidden) }); n != 0 {
		t.Errorf("counting a decision allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { counted.sessions.cache.stats.lookup(false) }); n != 0 {
		t.Errorf("counting a cache lookup allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { counted.metrics.signIn("credentials", errCredentialsSignin) }); n != 0 {
		t.Errorf("counting a sign-in allocates %v times", n)
	}
}

// Sign-ins are counted by provider id and outcome; an unknown provider or
// kind lands on a fixed label, never on what a request said.
func TestMetricsLabels(t *testing.T) {
	rl, reg := instrumented(t)
	rl.metrics.signIn("credentials", "")
	for _, code := range []string{errCredentialsSignin, errAccessDenied, errVerification, errAccountNotLinked} {
		rl.metrics.signIn("credentials", code)
	}
	rl.metrics.signIn("credentials", errConfiguration)
	rl.metrics.signIn("attacker-chosen", errOAuthCallback)
	rl.metrics.rateLimit(limitEmail)
	rl.metrics.rateLimit("attacker-chosen")
	rl.metrics.signOut()

	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"caddy_authgate_sign_ins_total", map[string]string{"provider": "credentials", "outcome": "success"}, 1},
		{"caddy_authgate_sign_ins_total", map[string]string{"provider": "credentials", "outcome": "denied"}, 4},
		{"caddy_authgate_sign_ins_total", map[string]string{"provider": "credentials", "outcome": "error"}, 1},
		{"caddy_authgate_sign_ins_total", map[string]string{"provider": "", "outcome": "error"}, 1},
		{"caddy_authgate_rate_limited_total", map[string]string{"kind": "email"}, 1},
		{"caddy_authgate_rate_limited_total", map[string]string{"kind": "other"}, 1},
		{"caddy_authgate_sign_outs_total", map[string]string{"realm": "default"}, 1},
	} {
		if got := metricValue(t, reg, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == "attacker-chosen" {
					t.Errorf("%s has a label value the caller chose: %v", f.GetName(), m.GetLabel())
				}
			}
		}
	}
}

// The store wrapper counts failures by operation, not answers (not found,
// conflict), and keeps a store's Broadcaster.
func TestMetricsStoreErrors(t *testing.T) {
	rl, reg := instrumented(t)
	ctx := context.Background()
	if _, err := rl.sessions.store.GetUser(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetUser of nobody: %v", err)
	}
	failing := rl.metrics.countStoreErrors(failingStore{Store: store.NewMemory()})
	if _, err := failing.GetSession(ctx, "x"); err == nil {
		t.Fatal("the failing store did not fail")
	}
	if got := metricValue(t, reg, "caddy_authgate_store_errors_total", map[string]string{"op": "get_user"}); got != 0 {
		t.Errorf("store_errors_total{op=get_user} = %v after a not-found answer, want 0", got)
	}
	if got := metricValue(t, reg, "caddy_authgate_store_errors_total", map[string]string{"op": "get_session"}); got != 1 {
		t.Errorf("store_errors_total{op=get_session} = %v, want 1", got)
	}
	if _, ok := rl.sessions.store.(store.Broadcaster); ok {
		t.Error("the wrapped memory store claims to broadcast")
	}
	if _, ok := rl.metrics.countStoreErrors(broadcastingStore{Store: store.NewMemory()}).(store.Broadcaster); !ok {
		t.Error("the wrapper hides a store's Broadcaster")
	}
	if _, ok := rl.sessions.store.(store.UserDeleter); !ok {
		t.Error("the wrapper hides a store's UserDeleter")
	}
	rl.sessions.cache.put("k", newTokenEntry(map[string]any{"exp": float64(time.Now().Add(time.Hour).Unix())}), time.Now())
	if got := metricValue(t, reg, "caddy_authgate_token_cache_entries", map[string]string{"realm": "default"}); got != 1 {
		t.Errorf("token_cache_entries = %v, want 1", got)
	}
}

type failingStore struct{ store.Store }

func (failingStore) GetSession(context.Context, string) (store.Session, error) {
	return store.Session{}, errors.New("connection refused")
}

type broadcastingStore struct{ store.Store }

func (broadcastingStore) Publish(context.Context, string, string) error { return nil }
func (broadcastingStore) Subscribe(context.Context, string, func(string), func()) error {
	return nil
}

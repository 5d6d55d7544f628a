package handlers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/authgate/caddy-authgate/store"
)

// metrics are the authgate app's Prometheus metrics (DESIGN.md "Operator
// surface"), in the registry of the config that loaded the app, which Caddy's
// admin /metrics and the `metrics` handler serve. Each config has its own
// registry, so a reload registers them afresh and starts them at zero, as
// Caddy's own caddy_http_* metrics do; nothing is registered twice.
//
// Label values are fixed sets or configuration names (realm, provider and
// callback names), never user data. The hot path (the guard's decision, the
// token cache) uses counters resolved at provision: an Inc is an atomic add.
type metrics struct {
	signIns     *prometheus.CounterVec
	requests    *prometheus.CounterVec
	signOuts    *prometheus.CounterVec
	cacheHits   prometheus.Counter
	cacheMisses prometheus.Counter
	webhooks    *prometheus.HistogramVec
	storeErrors *prometheus.CounterVec
	rateLimited *prometheus.CounterVec
	reg         prometheus.Registerer
}

const metricsNamespace = "caddy_authgate"

// newMetrics creates the metrics and registers them with reg.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Name: name, Help: help}, labels)
	}
	m := &metrics{
		signIns:  counter("sign_ins_total", "Sign-ins by realm, provider id and outcome (success, denied, error).", "realm", "provider", "outcome"),
		requests: counter("requests_total", "Guarded requests by realm and decision (allowed, unauthenticated, forbidden, unavailable).", "realm", "decision"),
		signOuts: counter("sign_outs_total", "Sign-outs that ended a session, by realm.", "realm"),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricsNamespace, Name: "token_cache_hits_total",
			Help: "Session lookups answered by the in-process token cache."}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricsNamespace, Name: "token_cache_misses_total",
			Help: "Session lookups the token cache could not answer (the token was decrypted or the store asked)."}),
		webhooks: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: metricsNamespace, Name: "webhook_duration_seconds",
			Help:    "Duration of webhook calls by callback (sign_in, redirect, jwt, session) and outcome (success, error, timeout).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"callback", "outcome"}),
		storeErrors: counter("store_errors_total", "Store operations that failed (not counting not-found and conflict answers), by realm and operation.", "realm", "op"),
		rateLimited: counter("rate_limited_total", "Requests refused by a rate limit, by realm and kind.", "realm", "kind"),
		reg:         reg,
	}
	for _, c := range []prometheus.Collector{m.signIns, m.requests, m.signOuts, m.cacheHits, m.cacheMisses, m.webhooks, m.storeErrors, m.rateLimited} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering metrics: %v", err)
		}
	}
	return m, nil
}

// decision is what the guard did with a request: the requests_total label.
type decision int

const (
	decisionAllowed decision = iota
	decisionUnauthenticated
	decisionForbidden
	decisionUnavailable
	numDecisions
)

var decisionNames = [numDecisions]string{"allowed", "unauthenticated", "forbidden", "unavailable"}

// Sign-in outcomes: the sign_ins_total label.
const (
	outcomeSuccess = iota
	outcomeDenied
	outcomeError
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"success", "denied", "error"}

// deniedCodes are the error codes that refuse a user rather than report a
// failure: the sign-in was denied, not broken.
var deniedCodes = map[string]bool{
	errAccessDenied: true, errCredentialsSignin: true, errVerification: true, errAccountNotLinked: true,
}

// Rate limit kinds: the rate_limited_total label.
const (
	limitCredentials = "credentials" // failed credentials sign-ins
	limitEmail       = "email"       // sign-in links sent
)

var rateLimitKinds = []string{limitCredentials, limitEmail}

// storeOps are the store operations store_errors_total counts, by label.
var storeOps = []string{
	"create_user", "get_user", "get_user_by_email", "update_user", "delete_user", "link_account", "get_user_by_account",
	"create_verification_token", "use_verification_token",
	"create_session", "get_session", "update_session", "delete_session", "user_sessions",
	"revoke", "revocations", "claim", "set_claim", "get_claim", "hit", "publish", "subscribe",
}

// realmMetrics are one realm's metrics, their label values resolved.
type realmMetrics struct {
	requests    [numDecisions]prometheus.Counter
	signIns     map[string]*[numOutcomes]prometheus.Counter // by provider id; "" for a failure before the provider is known
	signOuts    prometheus.Counter
	storeErrors map[string]prometheus.Counter // by op
	rateLimited map[string]prometheus.Counter // by kind
	otherLimit  prometheus.Counter            // a kind not in rateLimitKinds
}

// instrument has the app's realms report to Caddy: metrics in the config's
// registry, events through the events app (loaded, and so created if the
// config has none, as Caddy's TLS app does).
func (a *App) instrument(ctx caddy.Context) error {
	m, err := newMetrics(ctx.GetMetricsRegistry())
	if err != nil {
		return err
	}
	eventsApp, err := ctx.App("events")
	if err != nil {
		return fmt.Errorf("loading the events app: %v", err)
	}
	for name, rl := range a.realms {
		if rl.metrics, err = m.forRealm(rl); err != nil {
			return err
		}
		rl.events = &emitter{app: eventsApp.(*caddyevents.App), ctx: ctx, realm: name}
		rl.cb.ObserveWebhooks(m.observeWebhook)
	}
	return nil
}

// forRealm resolves rl's label sets, registers its token cache's size and
// counts its cache's hits and misses.
func (m *metrics) forRealm(rl *realm) (*realmMetrics, error) {
	name := rl.name
	rm := &realmMetrics{
		signIns:     map[string]*[numOutcomes]prometheus.Counter{},
		signOuts:    m.signOuts.WithLabelValues(name),
		storeErrors: make(map[string]prometheus.Counter, len(storeOps)),
		rateLimited: map[string]prometheus.Counter{},
		otherLimit:  m.rateLimited.WithLabelValues(name, "other"),
	}
	for d := range numDecisions {
		rm.requests[d] = m.requests.WithLabelValues(name, decisionNames[d])
	}
	ids := []string{""}
	for _, p := range rl.providers.list {
		ids = append(ids, p.ID())
	}
	for _, id := range ids {
		var cs [numOutcomes]prometheus.Counter
		for o := range numOutcomes {
			cs[o] = m.signIns.WithLabelValues(name, id, outcomeNames[o])
		}
		rm.signIns[id] = &cs
	}
	for _, op := range storeOps {
		rm.storeErrors[op] = m.storeErrors.WithLabelValues(name, op)
	}
	for _, kind := range rateLimitKinds {
		rm.rateLimited[kind] = m.rateLimited.WithLabelValues(name, kind)
	}
	cache := rl.sessions.cache
	cache.stats = &cacheStats{hits: m.cacheHits, misses: m.cacheMisses}
	entries := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: metricsNamespace, Name: "token_cache_entries", ConstLabels: prometheus.Labels{"realm": name},
		Help: "Decoded session tokens held in the in-process cache, by realm.",
	}, func() float64 { return float64(cache.len()) })
	if err := m.reg.Register(entries); err != nil {
		return nil, fmt.Errorf("registering metrics: %v", err)
	}
	return rm, nil
}

// decide counts one guarded request's decision.
func (m *realmMetrics) decide(d decision) {
	if m != nil {
		m.requests[d].Inc()
	}
}

// signIn counts one sign-in through provider (an id) that ended with the
// Auth.js error code, "" for a success.
func (m *realmMetrics) signIn(provider, code string) {
	if m == nil {
		return
	}
	cs := m.signIns[provider]
	if cs == nil {
		cs = m.signIns[""]
	}
	switch {
	case code == "":
		cs[outcomeSuccess].Inc()
	case deniedCodes[code]:
		cs[outcomeDenied].Inc()
	default:
		cs[outcomeError].Inc()
	}
}

// signOut counts one sign-out that ended a session.
func (m *realmMetrics) signOut() {
	if m != nil {
		m.signOuts.Inc()
	}
}

// rateLimit counts a request refused by a rate limit of kind (limitCredentials, limitEmail).
func (m *realmMetrics) rateLimit(kind string) {
	if m == nil {
		return
	}
	if c := m.rateLimited[kind]; c != nil {
		c.Inc()
		return
	}
	m.otherLimit.Inc()
}

// observeWebhook records a webhook call (a callbacks.WebhookObserver).
func (m *metrics) observeWebhook(callback, outcome string, elapsed time.Duration) {
	m.webhooks.WithLabelValues(callback, outcome).Observe(elapsed.Seconds())
}

// storeError counts err of the store operation op, unless it is an answer
// rather than a failure (not found, conflict) or the request went away.
func (m *realmMetrics) storeError(op string, err error) {
	if m == nil || err == nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) || errors.Is(err, context.Canceled) {
		return
	}
	m.storeErrors[op].Inc()
}

// cacheStats counts the token cache's hits and misses.
type cacheStats struct {
	hits, misses prometheus.Counter
}

// lookup counts one cache lookup; hit reports whether it found a live entry.
func (s *cacheStats) lookup(hit bool) {
	switch {
	case s == nil:
	case hit:
		s.hits.Inc()
	default:
		s.misses.Inc()
	}
}

// len is about the number of tokens in the cache.
func (c *tokenCache) len() int {
	return c.entries.EstimatedSize()
}

// countStoreErrors wraps st so that its failures count in store_errors_total.
// The wrapper keeps st's optional interfaces (a Redis store's Broadcaster).
func (m *realmMetrics) countStoreErrors(st store.Store) store.Store {
	if m == nil {
		return st
	}
	c := &countingStore{Store: st, m: m}
	if b, ok := st.(store.Broadcaster); ok {
		return &countingBroadcaster{countingStore: c, b: b}
	}
	return c
}

// countingStore is a store whose failures are counted.
type countingStore struct {
	store.Store
	m *realmMetrics
}

func (s *countingStore) CreateUser(ctx context.Context, u store.User) (store.User, error) {
	u, err := s.Store.CreateUser(ctx, u)
	s.m.storeError("create_user", err)
	return u, err
}

func (s *countingStore) GetUser(ctx context.Context, id string) (store.User, error) {
	u, err := s.Store.GetUser(ctx, id)
	s.m.storeError("get_user", err)
	return u, err
}

func (s *countingStore) GetUserByEmail(ctx context.Context, email string) (store.User, error) {
	u, err := s.Store.GetUserByEmail(ctx, email)
	s.m.storeError("get_user_by_email", err)
	return u, err
}

func (s *countingStore) UpdateUser(ctx context.Context, u store.User) error {
	err := s.Store.UpdateUser(ctx, u)
	s.m.storeError("update_user", err)
	return err
}

// DeleteUser deletes through the wrapped store when it is a UserDeleter, and
// does nothing otherwise (store.ResolveUser deletes on a best-effort basis).
func (s *countingStore) DeleteUser(ctx context.Context, id string) error {
	d, ok := s.Store.(store.UserDeleter)
	if !ok {
		return nil
	}
	err := d.DeleteUser(ctx, id)
	s.m.storeError("delete_user", err)
	return err
}

func (s *countingStore) LinkAccount(ctx context.Context, a store.Account) error {
	err := s.Store.LinkAccount(ctx, a)
	s.m.storeError("link_account", err)
	return err
}

func (s *countingStore) GetUserByAccount(ctx context.Context, provider, providerAccountID string) (store.User, error) {
	u, err := s.Store.GetUserByAccount(ctx, provider, providerAccountID)
	s.m.storeError("get_user_by_account", err)
	return u, err
}

func (s *countingStore) CreateVerificationToken(ctx context.Context, t store.VerificationToken) error {
	err := s.Store.CreateVerificationToken(ctx, t)
	s.m.storeError("create_verification_token", err)
	return err
}

func (s *countingStore) UseVerificationToken(ctx context.Context, identifier, tokenHash string) (store.VerificationToken, error) {
	t, err := s.Store.UseVerificationToken(ctx, identifier, tokenHash)
	s.m.storeError("use_verification_token", err)
	return t, err
}

func (s *countingStore) CreateSession(ctx context.Context, se store.Session) error {
	err := s.Store.CreateSession(ctx, se)
	s.m.storeError("create_session", err)
	return err
}

func (s *countingStore) GetSession(ctx context.Context, id string) (store.Session, error) {
	se, err := s.Store.GetSession(ctx, id)
	s.m.storeError("get_session", err)
	return se, err
}

func (s *countingStore) UpdateSession(ctx context.Context, se store.Session) error {
	err := s.Store.UpdateSession(ctx, se)
	s.m.storeError("update_session", err)
	return err
}

func (s *countingStore) DeleteSession(ctx context.Context, id string) error {
	err := s.Store.DeleteSession(ctx, id)
	s.m.storeError("delete_session", err)
	return err
}

func (s *countingStore) UserSessions(ctx context.Context, userID string) ([]store.Session, error) {
	ss, err := s.Store.UserSessions(ctx, userID)
	s.m.storeError("user_sessions", err)
	return ss, err
}

func (s *countingStore) Revoke(ctx context.Context, jti string, until time.Time) error {
	err := s.Store.Revoke(ctx, jti, until)
	s.m.storeError("revoke", err)
	return err
}

func (s *countingStore) Revocations(ctx context.Context) (map[string]time.Time, error) {
	m, err := s.Store.Revocations(ctx)
	s.m.storeError("revocations", err)
	return m, err
}

func (s *countingStore) Claim(ctx context.Context, key, value string, ttl time.Duration) error {
	err := s.Store.Claim(ctx, key, value, ttl)
	s.m.storeError("claim", err)
	return err
}

func (s *countingStore) SetClaim(ctx context.Context, key, value string, ttl time.Duration) error {
	err := s.Store.SetClaim(ctx, key, value, ttl)
	s.m.storeError("set_claim", err)
	return err
}

func (s *countingStore) GetClaim(ctx context.Context, key string) (string, error) {
	v, err := s.Store.GetClaim(ctx, key)
	s.m.storeError("get_claim", err)
	return v, err
}

func (s *countingStore) Hit(ctx context.Context, key string, window time.Duration) (int, error) {
	n, err := s.Store.Hit(ctx, key, window)
	s.m.storeError("hit", err)
	return n, err
}

// countingBroadcaster is a counting store that broadcasts (Redis).
type countingBroadcaster struct {
	*countingStore
	b store.Broadcaster
}

func (s *countingBroadcaster) Publish(ctx context.Context, topic, msg string) error {
	err := s.b.Publish(ctx, topic, msg)
	s.m.storeError("publish", err)
	return err
}

func (s *countingBroadcaster) Subscribe(ctx context.Context, topic string, onMessage func(msg string), onResync func()) error {
	err := s.b.Subscribe(ctx, topic, onMessage, onResync)
	s.m.storeError("subscribe", err)
	return err
}

// Interface guards
var (
	_ store.Store       = (*countingStore)(nil)
	_ store.UserDeleter = (*countingStore)(nil)
	_ store.Broadcaster = (*countingBroadcaster)(nil)
)

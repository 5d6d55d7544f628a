package callbacks

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/authgate/caddy-authgate/internal/httpjson"
)

// WebhookConfig configures a webhook rule: authgate POSTs the callback's variables
// as JSON and takes the decision from the answer.
type WebhookConfig struct {
	// URL receives the POST.
	URL string `json:"url"`
	// Secret signs each request: X-Authgate-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>.
	Secret string `json:"secret,omitempty"`
	// Timeout bounds the whole call. Default: 3s.
	Timeout Duration `json:"timeout,omitempty"`
	// Headers are added to each request.
	Headers map[string]string `json:"headers,omitempty"`
}

// Duration is a duration in JSON: nanoseconds, or a string such as "3s".
type Duration time.Duration

// UnmarshalJSON accepts a number of nanoseconds or a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	*d = Duration(n)
	return nil
}

const (
	defaultWebhookTimeout = 3 * time.Second
	maxWebhookAnswer      = 1 << 20
)

type webhook struct {
	url     string
	secret  []byte
	timeout time.Duration
	headers map[string]string
	client  *http.Client
	now     func() time.Time
	observe WebhookObserver // nil: nobody is told (ObserveWebhooks)
}

// compileWebhook compiles r's webhook; its URL is r.Webhook.URL or the rule's
// argument (`webhook <url>`, as the Caddyfile writes it).
func compileWebhook(r Rule, client *http.Client) (*webhook, error) {
	var cfg WebhookConfig
	if r.Webhook != nil {
		cfg = *r.Webhook
	}
	if len(r.Args) > 1 {
		return nil, wantArgs(r, 1)
	}
	if len(r.Args) == 1 {
		if cfg.URL != "" && cfg.URL != r.Args[0] {
			return nil, fmt.Errorf("two URLs, %q and %q", r.Args[0], cfg.URL)
		}
		cfg.URL = r.Args[0]
	}
	if cfg.URL == "" {
		return nil, fmt.Errorf("webhook needs a URL")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("webhook URL %q: want an absolute http(s) URL", cfg.URL)
	}
	w := &webhook{url: cfg.URL, secret: []byte(cfg.Secret), timeout: time.Duration(cfg.Timeout), headers: cfg.Headers, client: client, now: time.Now}
	if w.timeout <= 0 {
		w.timeout = defaultWebhookTimeout
	}
	for k := range cfg.Headers {
		if CheckHeaderName(k) != nil {
			return nil, fmt.Errorf("webhook header %q: invalid name", k)
		}
	}
	return w, nil
}

// Sign returns the X-Authgate-Signature value for body at time t.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// call POSTs {"callback": name, <vars>} and returns the answer object. A timeout,
// a non-2xx status or an answer that is not a JSON object is an error.
func (w *webhook) call(ctx context.Context, name string, vars map[string]any) (answer map[string]any, err error) {
	payload := make(map[string]any, len(vars)+1)
	for k, v := range vars {
		payload[k] = v
	}
	payload["callback"] = name
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("webhook %s: encoding the request: %v", w.url, err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	if w.observe != nil {
		defer func() { w.observe(name, webhookOutcome(ctx, err), time.Since(start)) }()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("webhook %s: %v", w.url, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "authgate")
	for k, v := range w.headers {
		req.Header.Set(k, v)
	}
	if len(w.secret) > 0 {
		req.Header.Set("X-Authgate-Signature", Sign(w.secret, w.now(), body))
	}
	var out map[string]any
	_, err = httpjson.Do(w.client, req, maxWebhookAnswer, &out)
	if errors.Is(err, httpjson.ErrDecode) || err == nil && out == nil {
		return nil, fmt.Errorf("webhook %s: the answer is not a JSON object", w.url)
	}
	if err != nil {
		return nil, w.callErr(ctx, err)
	}
	return out, nil
}

// callErr describes a failed call; a call cut short by the webhook's timeout
// says so in words, not only as Go's "context deadline exceeded".
func (w *webhook) callErr(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("webhook %s: timed out after %v: %v", w.url, w.timeout, err)
	}
	return fmt.Errorf("webhook %s: %v", w.url, err)
}

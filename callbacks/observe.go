package callbacks

import (
	"context"
	"time"
)

// WebhookObserver is told about every webhook call: the callback it was made
// for (sign_in, redirect, jwt, session), its outcome (success, error or
// timeout) and how long it took.
type WebhookObserver func(callback, outcome string, elapsed time.Duration)

// ObserveWebhooks has observe told about every webhook call c makes (metrics).
func (c *Callbacks) ObserveWebhooks(observe WebhookObserver) {
	for _, r := range c.signIn {
		r.hook.setObserver(observe)
	}
	for _, r := range c.redirect {
		r.hook.setObserver(observe)
	}
	for _, rules := range [][]setRule{c.jwt, c.session} {
		for _, r := range rules {
			r.hook.setObserver(observe)
		}
	}
}

func (w *webhook) setObserver(observe WebhookObserver) {
	if w != nil {
		w.observe = observe
	}
}

// webhookOutcome names how a call with the timeout context ctx ended with err.
func webhookOutcome(ctx context.Context, err error) string {
	switch {
	case err == nil:
		return "success"
	case ctx.Err() == context.DeadlineExceeded:
		return "timeout"
	}
	return "error"
}

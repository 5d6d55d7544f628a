package callbacks

import (
	"context"
	"encoding/json"
	"strings"
)

// Trace records the rules an evaluation looks at and what each did, for
// `caddy authgate explain`; an evaluation sees it in its context (WithTrace).
type Trace struct {
	// Steps are the rules evaluated, in order.
	Steps []Step
	// Webhooks: webhook rules are called. Without it a webhook rule whose
	// condition holds is recorded and passed over, as if it answered `{}`.
	Webhooks bool
}

// Step is one rule an evaluation looked at.
type Step struct {
	// Source is where the rule was written: "Caddyfile:12".
	Source string
	// Rule is the rule as written: "deny `!(\"admins\" in user.groups)`".
	Rule string
	// Result is what the rule did: "matches", "does not match", "set role = \"admin\"", ….
	Result string
}

type traceKey struct{}

// WithTrace returns ctx carrying t: the callbacks evaluated with it record
// their steps in t.
func WithTrace(ctx context.Context, t *Trace) context.Context {
	return context.WithValue(ctx, traceKey{}, t)
}

// traceOf is ctx's trace, nil when there is none (a request's evaluation).
func traceOf(ctx context.Context) *Trace {
	t, _ := ctx.Value(traceKey{}).(*Trace)
	return t
}

func (t *Trace) add(source, rule, result string) {
	if t != nil {
		t.Steps = append(t.Steps, Step{Source: source, Rule: rule, Result: result})
	}
}

// then adds detail to the last step's result.
func (t *Trace) then(detail string) {
	if t != nil && len(t.Steps) > 0 {
		t.Steps[len(t.Steps)-1].Result += ": " + detail
	}
}

// skipsWebhooks reports whether webhook rules are passed over, not called.
func (t *Trace) skipsWebhooks() bool { return t != nil && !t.Webhooks }

// ruleHead is what every compiled rule has: where it was written, its text, its
// condition and whether it refuses the user.
type ruleHead struct {
	source, text string
	cond         *cond
	// refuses: an absent key makes the rule apply (Action.refuses).
	refuses bool
}

func newHead(a Action, r Rule, cd *cond) ruleHead {
	return ruleHead{source: r.Source, text: describeRule(r), cond: cd, refuses: a.refuses}
}

// applies evaluates the rule's condition and records it in t: a condition that
// holds applies the rule, and so does an absent key when the rule refuses.
func (h *ruleHead) applies(t *Trace, vars map[string]any) (bool, error) {
	o, absent, err := h.cond.eval(vars)
	if err != nil {
		t.add(h.source, h.text, "error: "+err.Error())
		return false, err
	}
	ok := o == outTrue || o == outAbsent && h.refuses
	if t != nil {
		t.add(h.source, h.text, describeOutcome(o, absent, ok))
	}
	return ok, nil
}

func describeOutcome(o outcome, absent string, applies bool) string {
	switch {
	case o == outTrue:
		return "matches"
	case o == outFalse:
		return "does not match"
	case applies:
		return "matches (" + absent + ", which decides against the user)"
	}
	return "does not match (" + absent + ")"
}

// describeRule writes r as the Caddyfile does: action, arguments, condition.
func describeRule(r Rule) string {
	parts := []string{r.Action}
	for i, a := range r.Args {
		if r.Action == "rewrite" || r.Action == "set" && i == 1 {
			a = "`" + a + "`"
		}
		parts = append(parts, a)
	}
	if r.If != nil {
		parts = append(parts, describeCondition(*r.If))
	}
	return strings.Join(parts, " ")
}

func describeCondition(c Condition) string {
	if c.Expr != "" {
		return "`" + c.Expr + "`"
	}
	parts := []string{c.Kind}
	if c.Path != "" {
		parts = append(parts, c.Path)
	}
	return strings.Join(append(parts, c.Values...), " ")
}

// jsonText is v as compact JSON, for a step's result.
func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "?"
	}
	return string(b)
}

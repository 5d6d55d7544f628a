package callbacks

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Action is one kind of rule a callback block accepts, and the shape of the rule
// line: `<action> [<argument>…] [<condition>]`, a block for webhooks. The table
// below declares each callback's actions once: the Caddyfile parser reads it to
// tell a rule's arguments from its condition, and Compile to check a rule before
// compiling it.
type Action struct {
	// Name is the action as written: allow, set, webhook, ….
	Name string
	// Args is how many arguments come before the condition, or AnyArgs.
	Args int
	// Values, when set, are the only arguments accepted (`default allow|deny`).
	Values []string
	// Usage is the rule as the documentation writes it: "redirect <url>".
	Usage string
	// Conditional: the rule may end with a condition.
	Conditional bool
	// Block: the rule may have a block (a webhook's secret, timeout and headers).
	Block bool
	// refuses: the rule refuses the user (deny, redirect), so a condition that
	// reads an absent key makes it apply; other rules then do not apply.
	refuses bool
}

// AnyArgs is the Args of an action that takes one or more arguments, up to the
// condition: allow_origin's origins.
const AnyArgs = -1

var (
	allowAction   = Action{Name: "allow", Usage: "allow", Conditional: true}
	denyAction    = Action{Name: "deny", Usage: "deny", Conditional: true, refuses: true}
	webhookAction = Action{Name: "webhook", Args: 1, Usage: "webhook <url>", Conditional: true, Block: true}
	setAction     = Action{Name: "set", Args: 2, Usage: "set <path> <expr>", Conditional: true}
	unsetAction   = Action{Name: "unset", Args: 1, Usage: "unset <path>", Conditional: true}

	// callbackKinds are the callbacks in Config's order.
	callbackKinds = []string{KindSignIn, KindRedirect, KindJWT, KindSession}

	actions = map[string][]Action{
		KindSignIn: {
			allowAction,
			denyAction,
			{Name: "redirect", Args: 1, Usage: "redirect <url>", Conditional: true, refuses: true},
			webhookAction,
			{Name: "default", Args: 1, Values: []string{"allow", "deny"}, Usage: "default allow|deny"},
		},
		KindRedirect: {
			{Name: "allow_origin", Args: AnyArgs, Usage: "allow_origin <origin…>"},
			allowAction,
			denyAction,
			{Name: "rewrite", Args: 1, Usage: "rewrite <expr>", Conditional: true},
			webhookAction,
		},
		KindJWT: {
			setAction,
			unsetAction,
			webhookAction,
			{Name: "refresh_access_token", Usage: "refresh_access_token"},
		},
		KindSession: {setAction, unsetAction, webhookAction},
	}
)

// Actions returns the rule actions of callback (sign_in, redirect, jwt or
// session) in the documentation's order; nil when callback is none of these.
func Actions(callback string) []Action {
	out := slices.Clone(actions[callback])
	for i := range out {
		out[i].Values = slices.Clone(out[i].Values)
	}
	return out
}

// LookupAction returns the action called name in callback's block.
func LookupAction(callback, name string) (Action, bool) {
	i := slices.IndexFunc(actions[callback], func(a Action) bool { return a.Name == name })
	if i < 0 {
		return Action{}, false
	}
	a := actions[callback][i]
	a.Values = slices.Clone(a.Values)
	return a, true
}

// checkRule compiles r's condition and checks r against its action's shape.
// A webhook's arguments are left to compileWebhook: its URL may come from the
// block instead.
func checkRule(kind string, r Rule) (Action, *cond, error) {
	cd, err := compileCond(kind, r.If, r.Source)
	if err != nil {
		return Action{}, nil, ruleErr(kind, r, err)
	}
	a, ok := LookupAction(kind, r.Action)
	if !ok {
		return a, nil, ruleErr(kind, r, unknownAction(kind, r.Action))
	}
	if !a.Block {
		if err := a.check(r); err != nil {
			return a, nil, ruleErr(kind, r, err)
		}
	}
	return a, cd, nil
}

// check reports whether r's arguments and condition fit a.
func (a Action) check(r Rule) error {
	argsOK := len(r.Args) == a.Args || a.Args == AnyArgs && len(r.Args) > 0
	switch {
	case a.Values != nil:
		if !argsOK || !slices.Contains(a.Values, r.Args[0]) || r.If != nil {
			forms := make([]string, len(a.Values))
			for i, v := range a.Values {
				forms[i] = "`" + a.Name + " " + v + "`"
			}
			return fmt.Errorf("want %s", orList(forms))
		}
	case a.Conditional && a.Args == AnyArgs:
		if !argsOK {
			return errors.New("takes at least one argument before its condition")
		}
	case a.Conditional:
		if !argsOK {
			return wantArgs(r, a.Args)
		}
	case a.Args == 0:
		if len(r.Args) > 0 || r.If != nil || r.Webhook != nil {
			return errors.New("takes no argument and no condition")
		}
	default:
		if !argsOK || r.If != nil {
			return fmt.Errorf("want `%s` with no condition", a.Usage)
		}
	}
	return nil
}

// unknownAction lists the actions kind accepts, and where name belongs when it
// is another callback's.
func unknownAction(kind, name string) error {
	var here, elsewhere []string
	for _, a := range actions[kind] {
		here = append(here, a.Name)
	}
	for _, k := range callbackKinds {
		if _, ok := LookupAction(k, name); ok {
			elsewhere = append(elsewhere, k)
		}
	}
	if len(elsewhere) > 0 {
		return fmt.Errorf("unknown action: want %s; %s belongs in the %s block", orList(here), name, orList(elsewhere))
	}
	return fmt.Errorf("unknown action: want %s", orList(here))
}

// orList joins items as "a, b or c".
func orList(items []string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

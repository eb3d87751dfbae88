package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/spf13/pflag"
)

// Var is one configuration variable: its environment name, its flag and its
// default, as the struct tags of Config give them.
type Var struct {
	Env     string       // WAGATE_REDIS_URL
	Flag    string       // redis-url (used as --redis-url)
	Default string       // "" when it has none
	Type    reflect.Type // the field's Go type
}

// Vars returns every variable Config reads, in the order of its fields, as
// the env library lists them from the struct tags.
func Vars() []Var {
	params, err := env.GetFieldParamsWithOptions(&Config{}, env.Options{Prefix: Prefix})
	if err != nil {
		panic("config: struct tags: " + err.Error()) // the tags are constants: a bug, caught by the tests
	}
	types := make(map[string]reflect.Type)
	for _, f := range reflect.VisibleFields(reflect.TypeFor[Config]()) {
		if key, _, _ := strings.Cut(f.Tag.Get("env"), ","); key != "" {
			types[key] = f.Type
		}
	}
	out := make([]Var, 0, len(params))
	for _, p := range params {
		if p.OwnKey == "" {
			continue
		}
		out = append(out, Var{Env: p.Key, Flag: FlagName(p.Key), Default: p.DefaultValue, Type: types[p.OwnKey]})
	}
	return out
}

// FlagName returns the command-line flag of an environment variable:
// WAGATE_REDIS_URL → redis-url.
func FlagName(envName string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(envName, Prefix)), "_", "-")
}

// Setting names a variable for an error message: "WAGATE_REDIS_URL
// (--redis-url)".
func Setting(envName string) string {
	if !strings.HasPrefix(envName, Prefix) {
		envName = Prefix + envName
	}
	return envName + " (--" + FlagName(envName) + ")"
}

// AddFlags adds one flag per variable of Config to fs (WAGATE_REDIS_URL →
// --redis-url), showing its default. A flag given on the command line
// overrides its variable once ApplyFlags has run; values are parsed and
// checked by Load, as the variables' are, so both share one set of rules and
// messages.
func AddFlags(fs *pflag.FlagSet) {
	for _, v := range Vars() {
		f := fs.VarPF(&flagValue{s: v.Default, typ: flagType(v.Type)}, v.Flag, "", "sets "+v.Env)
		if v.Type.Kind() == reflect.Bool {
			f.NoOptDefVal = "true" // --insecure-no-signature alone means true
		}
	}
}

// flagValue holds a flag's text as given; Load parses it with the variable's
// rules.
type flagValue struct{ s, typ string }

func (v *flagValue) String() string     { return v.s }
func (v *flagValue) Set(s string) error { v.s = s; return nil }
func (v *flagValue) Type() string       { return v.typ }

// flagType names a field's type in --help.
func flagType(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[time.Duration]():
		return "duration"
	case reflect.TypeFor[[]time.Duration]():
		return "durations"
	case reflect.TypeFor[[]string]():
		return "list"
	}
	return t.Kind().String()
}

// ApplyFlags sets the variable of every flag of fs that AddFlags added and
// the command line gave, so that Load, and every part of a command that reads
// a WAGATE_* variable, sees the flag's value instead of the environment's.
func ApplyFlags(fs *pflag.FlagSet) error {
	for _, v := range Vars() {
		f := fs.Lookup(v.Flag)
		if f == nil || !f.Changed {
			continue
		}
		if err := os.Setenv(v.Env, f.Value.String()); err != nil {
			return fmt.Errorf("config: --%s: %w", v.Flag, err)
		}
	}
	return nil
}

// LoadFlags applies the flags of fs (ApplyFlags), loads the configuration
// (Load) and runs check on it (for example Config.CheckIngress), returning
// the first error, which names the variable and flag at fault.
func LoadFlags(fs *pflag.FlagSet, check func(Config) error) (Config, error) {
	if err := ApplyFlags(fs); err != nil {
		return Config{}, err
	}
	c, err := Load()
	if err != nil {
		return Config{}, err
	}
	if err := check(c); err != nil {
		return Config{}, err
	}
	return c, nil
}

// explain rewrites the env library's errors, which name Go fields ("parse
// error on field \"DedupeHorizon\""), into ones naming the variable and its
// flag, the bad value and what is accepted.
func explain(err error) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return fmt.Errorf("config: %w", err)
	}
	msgs := make([]string, 0, len(agg.Errors))
	for _, e := range agg.Errors {
		msgs = append(msgs, explainOne(e))
	}
	return errors.New("config: " + strings.Join(msgs, "; "))
}

func explainOne(err error) string {
	var pe env.ParseError
	if !errors.As(err, &pe) {
		return err.Error()
	}
	f, ok := reflect.TypeFor[Config]().FieldByName(pe.Name)
	key, _, _ := strings.Cut(f.Tag.Get("env"), ",")
	if !ok || key == "" {
		return err.Error()
	}
	key = Prefix + key
	return fmt.Sprintf("%s = %q: %s", Setting(key), os.Getenv(key), accepted(pe.Type))
}

// accepted says what a variable of type t takes.
func accepted(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[time.Duration]():
		return "want a Go duration such as 30s, 5m or 168h"
	case reflect.TypeFor[[]time.Duration]():
		return "want comma-separated Go durations such as 1s,5s,15s"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "want a whole number"
	case reflect.Bool:
		return "want true or false"
	}
	return "want a " + t.String()
}

package controllers

import (
	"slices"

	"github.com/go-logr/logr"
)

// lazyValuesSink keeps the key-value pairs a logger is given (WithValues) and
// hands them to the sink below only when a line is written. zap encodes them at
// once, into a new copy of its core: on every pass, controller-runtime's
// reconcileID and the ApiToken's names cost a buffer and a clone, logged or not,
// and most passes log nothing (make bench: about a twentieth of the operator's
// allocations during convergence).
type lazyValuesSink struct {
	sink   logr.LogSink // one call deeper than a logr.Logger's own sink
	values []any
}

// lazyValues returns log with its later WithValues kept until a line is written.
func lazyValues(log logr.Logger) logr.Logger {
	sink := log.GetSink()
	if sink == nil {
		return log
	}
	if withDepth, ok := sink.(logr.CallDepthLogSink); ok {
		// Lines are written through one more frame (ours): callers are still
		// reported as the code that logged.
		sink = withDepth.WithCallDepth(1)
	}
	return logr.New(&lazyValuesSink{sink: sink})
}

// Init does nothing: the sink below was initialised when its logger was made.
func (s *lazyValuesSink) Init(logr.RuntimeInfo) {}

func (s *lazyValuesSink) Enabled(level int) bool { return s.sink.Enabled(level) }

func (s *lazyValuesSink) Info(level int, msg string, keysAndValues ...any) {
	s.withValues().Info(level, msg, keysAndValues...)
}

func (s *lazyValuesSink) Error(err error, msg string, keysAndValues ...any) {
	s.withValues().Error(err, msg, keysAndValues...)
}

func (s *lazyValuesSink) WithValues(keysAndValues ...any) logr.LogSink {
	// Clipped: two loggers made from this one never share an array.
	return &lazyValuesSink{sink: s.sink, values: append(slices.Clip(s.values), keysAndValues...)}
}

func (s *lazyValuesSink) WithName(name string) logr.LogSink {
	return &lazyValuesSink{sink: s.sink.WithName(name), values: s.values}
}

func (s *lazyValuesSink) WithCallDepth(depth int) logr.LogSink {
	withDepth, ok := s.sink.(logr.CallDepthLogSink)
	if !ok {
		return s
	}
	return &lazyValuesSink{sink: withDepth.WithCallDepth(depth), values: s.values}
}

// withValues is the sink below with the kept pairs, for one line.
func (s *lazyValuesSink) withValues() logr.LogSink {
	if len(s.values) == 0 {
		return s.sink
	}
	return s.sink.WithValues(s.values...)
}

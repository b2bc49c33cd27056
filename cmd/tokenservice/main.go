// Command tokenservice serves the Token Service API v1: the reference backend of
// apitoken-operator, for trying the operator and for its tests. It owns flags,
// TLS and signals; the server is internal/tokenservice. It must not import
// controllers or test/....
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/apitoken-dev/apitoken-operator/internal/tokenservice"
)

// version is stamped at build time: go build -ldflags "-X main.version=v0.1.0".
var version = "dev"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "tokenservice:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("tokenservice", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8080", "address to listen on")
	data := fs.String("data", "", "database file; empty keeps everything in memory")
	adminKeyFile := fs.String("admin-key-file", "", "file holding the admin key, at least 32 bytes (else TOKENSERVICE_ADMIN_KEY)")
	catalogFile := fs.String("catalog", "", "catalog file (YAML); empty uses the built-in demo catalog")
	tlsCert := fs.String("tls-cert-file", "", "TLS certificate (PEM); with --tls-key-file serves HTTPS")
	tlsKey := fs.String("tls-key-file", "", "TLS private key (PEM)")
	rateLimit := fs.Float64("rate-limit", 0, "requests per second served to each client (the admin key, each account SID) once authenticated; unauthenticated requests share ten times that; 0 means no limit")
	authFailureLimit := fs.Float64("auth-failure-limit", tokenservice.DefaultAuthFailureLimit, fmt.Sprintf("failed admin-key authentications (missing or wrong key) allowed per second per client IP after a burst of %d; beyond that the IP's management calls are answered 429 with Retry-After, the key unchecked, until the budget refills; calls with the right key spend nothing; 0 means no limit", tokenservice.AuthFailureBurst))
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Println("tokenservice", version)
		return nil
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return errors.New("--tls-cert-file and --tls-key-file go together")
	}
	if *authFailureLimit < 0 {
		return errors.New("--auth-failure-limit must be 0 (no limit) or more")
	}
	adminKey, err := readAdminKey(*adminKeyFile)
	if err != nil {
		return err
	}
	cfg := tokenservice.Config{
		AdminKey:         adminKey,
		DataPath:         *data,
		RateLimit:        *rateLimit,
		AuthFailureLimit: *authFailureLimit,
		Logger:           slog.New(slog.NewJSONHandler(os.Stderr, nil)),
	}
	if *catalogFile != "" {
		c, err := tokenservice.LoadCatalog(*catalogFile)
		if err != nil {
			return err
		}
		cfg.Catalog = &c
	}
	srv, err := tokenservice.New(cfg)
	if err != nil {
		return err
	}
	defer srv.Close()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	httpServer := srv.HTTPServer()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go expireIdempotencyRecords(ctx, srv, cfg.Logger)

	scheme := "http"
	if *tlsCert != "" {
		scheme = "https"
	}
	cfg.Logger.Info("serving", "url", scheme+"://"+ln.Addr().String(), "data", *data)
	served := make(chan error, 1)
	go func() {
		if *tlsCert != "" {
			served <- httpServer.ServeTLS(ln, *tlsCert, *tlsKey)
		} else {
			served <- httpServer.Serve(ln)
		}
	}()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	cfg.Logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return httpServer.Shutdown(shutdownCtx)
}

// minAdminKeyBytes is the shortest admin key the binary accepts: 32 bytes, e.g.
// head -c 32 /dev/urandom | base64 (44 bytes). The in-process server of the tests
// (tokenservice.New) takes any non-empty key.
const minAdminKeyBytes = 32

// readAdminKey reads the admin key from path, else from TOKENSERVICE_ADMIN_KEY,
// without surrounding white space. Its errors never contain the key.
func readAdminKey(path string) (string, error) {
	source, key := "TOKENSERVICE_ADMIN_KEY", ""
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("read admin key: %w", err)
		}
		if key = strings.TrimSpace(string(b)); key == "" {
			return "", fmt.Errorf("admin key file %s is empty", path)
		}
		source = "admin key file " + path
	} else if key = strings.TrimSpace(os.Getenv("TOKENSERVICE_ADMIN_KEY")); key == "" {
		return "", errors.New("no admin key: refusing to start without --admin-key-file or TOKENSERVICE_ADMIN_KEY")
	}
	if len(key) < minAdminKeyBytes {
		return "", fmt.Errorf("the admin key of %s is shorter than %d bytes: refusing to start; make one with: head -c 32 /dev/urandom | base64", source, minAdminKeyBytes)
	}
	return key, nil
}

func expireIdempotencyRecords(ctx context.Context, srv *tokenservice.Server, log *slog.Logger) {
	ticker := time.NewTicker(time.Hour)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			if err := srv.ExpireIdempotencyRecords(); err != nil {
				log.Error("expire idempotency records", "error", err.Error())
			}
		}
	}
}

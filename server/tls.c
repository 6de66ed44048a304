/* TLS for both listeners: OpenSSL context, ALPN (h2, http/1.1) and optional client verification. */
#include "conn.h"

#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <string.h>

static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    /* Prefer h2 (gRPC requires it), then http/1.1 (RFC 7301: server's preference order). */
    static const char *prefs[] = {"h2", "http/1.1"};
    for (size_t p = 0; p < 2; p++) {
        size_t plen = strlen(prefs[p]);
        for (unsigned int i = 0; i < inlen;) {
            unsigned int l = in[i];
            if (i + 1 + l > inlen)
                break;
            if (l == plen && memcmp(in + i + 1, prefs[p], l) == 0) {
                *out = in + i + 1;
                *outlen = (unsigned char)l;
                return SSL_TLSEXT_ERR_OK;
            }
            i += 1 + l;
        }
    }
    return SSL_TLSEXT_ERR_NOACK;
}

static const char *ssl_error(void)
{
    static _Thread_local char buf[256];
    unsigned long e = ERR_get_error();
    if (!e)
        return "unknown error";
    ERR_error_string_n(e, buf, sizeof buf);
    return buf;
}

int srv_tls_ctx_new(SSL_CTX **out, const srv_options *cfg, sp_err *err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return sp_fail(err, SP_EINTERNAL, "TLS: cannot create context: %s", ssl_error());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1) {
        sp_fail(err, SP_EINVAL, "TLS: cannot load certificate %s: %s", cfg->tls_cert, ssl_error());
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        sp_fail(err, SP_EINVAL, "TLS: cannot use key %s: %s", cfg->tls_key, ssl_error());
        goto fail;
    }
    if (cfg->tls_client_ca) {
        if (SSL_CTX_load_verify_locations(ctx, cfg->tls_client_ca, NULL) != 1) {
            sp_fail(err, SP_EINVAL, "TLS: cannot load client CA %s: %s", cfg->tls_client_ca,
                    ssl_error());
            goto fail;
        }
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->tls_client_ca);
        if (names)
            SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
    *out = ctx;
    return 0;
fail:
    SSL_CTX_free(ctx);
    return err ? err->code : SP_EINVAL;
}

const char *srv_tls_alpn(struct bufferevent *bev)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    if (!ssl)
        return "";
    const unsigned char *p = NULL;
    unsigned int len = 0;
    SSL_get0_alpn_selected(ssl, &p, &len);
    if (len == 2 && memcmp(p, "h2", 2) == 0)
        return "h2";
    if (len == 8 && memcmp(p, "http/1.1", 8) == 0)
        return "http/1.1";
    return "";
}

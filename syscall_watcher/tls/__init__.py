"""`--tls`: the plaintext of traced processes' TLS traffic (uprobes on libssl/libgnutls),
HTTP/1.1 parsed per connection, chat-completions exchanges recognised, secrets redacted."""

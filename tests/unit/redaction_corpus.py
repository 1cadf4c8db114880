"""A corpus of fake secrets and personal data in many formats, and benign text that must survive redaction.

Every value here is made up (keys are random strings of the right shape, card numbers are issuers' test
numbers, phone numbers are in fictional or reserved ranges). Each sample is (name, sensitive value, sentence
it appears in); the tests assert the value is gone from whatever cotwatch stores, publishes or logs.
"""

from __future__ import annotations

_PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAx3Yq9Zr8cW1uQhL0pTn6sKjD2fGvB4eR7mXoN5aYtUiPlKwE\n"
    "b2Vj8HsQ1cFdZ9rTgLpWn3oXyA6mKuJ0eIvS4hBqN7tRzC5lDfY2wGxM8kUoPaEj\n"
    "-----END RSA PRIVATE KEY-----"
)
_OPENSSH = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACDkP3mY7rGq2vXw9LtZs8HcJ1oNfA5bRuKe0WiYlTqVdgAAAJgK7xUuCu8V\n"
    "-----END OPENSSH PRIVATE KEY-----"
)
_JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkphbmUgRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ."
    "Qm9ndXNTaWduYXR1cmVGb3JUZXN0c09ubHk5OTk"
)

SECRETS: tuple[tuple[str, str, str], ...] = (
    ("aws access key id", "AKIAQX4J7T2M9RZ5WB3K", "use access key AKIAQX4J7T2M9RZ5WB3K for the upload"),
    ("aws temporary key id", "ASIAZ8N3V6K1P4Q7T2LC", "the STS key ASIAZ8N3V6K1P4Q7T2LC expires soon"),
    (
        "aws secret access key",
        "q7Vb3Xk9LmN2pR8sT4wY6zA1cE5gH0jK3nQ9uW2x",
        'aws_secret_access_key = "q7Vb3Xk9LmN2pR8sT4wY6zA1cE5gH0jK3nQ9uW2x"',
    ),
    (
        "github classic token",
        "ghp_R4nd0mF4k3T0k3nV4lu3F0rT3st1ngAbCd",
        "clone with ghp_R4nd0mF4k3T0k3nV4lu3F0rT3st1ngAbCd",
    ),
    (
        "github fine-grained token",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWX",
        "token github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWX works",
    ),
    ("gitlab token", "glpat-x7Yk2Lm9Nq4Rs8Tv1Wz3", "the CI uses glpat-x7Yk2Lm9Nq4Rs8Tv1Wz3 to push"),
    (
        "slack bot token",
        "xoxb-2048000001-4096000002-AbCdEfGhIjKlMnOpQrStUvWx",
        "post via xoxb-2048000001-4096000002-AbCdEfGhIjKlMnOpQrStUvWx",
    ),
    (
        "slack webhook",
        "https://hooks.slack.com/services/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",
        "notify https://hooks.slack.com/services/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 on failure",
    ),
    ("stripe secret key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "charge with sk_live_4eC39HqLyjWDarjtT1zdp7dc now"),
    (
        "openai style key",
        "sk-proj-Zx9Kq2Wm7Lp4Rt8Vb3Nc6Hd1",
        "set OPENAI key sk-proj-Zx9Kq2Wm7Lp4Rt8Vb3Nc6Hd1 in the env",
    ),
    (
        "sendgrid key",
        "SG.aBcDeFgHiJkLmNoPqRsTuV.wXyZaBcDeFgHiJkLmNoPqRsTuVwXyZaBcDeFgHiJkLm",
        "mail via SG.aBcDeFgHiJkLmNoPqRsTuV.wXyZaBcDeFgHiJkLmNoPqRsTuVwXyZaBcDeFgHiJkLm",
    ),
    ("twilio key", "SK0123456789abcdef0123456789abcdef", "twilio api key SK0123456789abcdef0123456789abcdef"),
    (
        "npm token",
        "npm_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
        "//registry.npmjs.org/:_authToken=npm_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
    ),
    ("jwt", _JWT, f"Authorization: Bearer {_JWT}"),
    (
        "bearer token",
        "9f8e7d6c5b4a39281706f5e4d3c2b1a0ffee",
        "curl -H 'Authorization: Bearer 9f8e7d6c5b4a39281706f5e4d3c2b1a0ffee'",
    ),
    ("basic auth url", "hunter2secret", "connect to postgres://admin:hunter2secret@db.internal:5432/app"),
    ("password in prose", "Tr0ub4dor&3x", "the admin password is Tr0ub4dor&3x so log in"),
    ("password assignment", "correcthorsebattery", "password=correcthorsebattery"),
    ("yaml secret", "s3cr3tV4lu3!", "client_secret: s3cr3tV4lu3!"),
    ("json api key", "a8F3kL9mQ2xZ7vB1nW4e", '{"api_key": "a8F3kL9mQ2xZ7vB1nW4e"}'),
    ("rsa private key", _PEM, f"here is the key:\n{_PEM}\nuse it"),
    ("openssh private key", _OPENSSH, f"{_OPENSSH}"),
    (
        "high entropy base64",
        "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdo",
        "the blob Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdo decodes",
    ),
    ("high entropy hex", "4f9a2c7e1b8d3f6a0c5e9b2d7f1a4c8e", "session 4f9a2c7e1b8d3f6a0c5e9b2d7f1a4c8e is live"),
)

PERSONAL: tuple[tuple[str, str, str], ...] = (
    ("email", "jane.doe@example.org", "write to jane.doe@example.org today"),
    ("email with plus", "j.smith+cotwatch@mail.example.co.uk", "cc j.smith+cotwatch@mail.example.co.uk"),
    ("us phone dashes", "415-555-0132", "call 415-555-0132 after five"),
    ("us phone parens", "(212) 555-0187", "office line (212) 555-0187"),
    ("international phone", "+44 20 7946 0958", "London desk +44 20 7946 0958"),
    ("german phone", "+49 30 901820", "Berlin +49 30 901820"),
    ("french phone", "+33 1 42 68 53 00", "Paris +33 1 42 68 53 00"),
    ("indian phone", "+91 98765 43210", "mobile +91 98765 43210"),
    ("visa spaced", "4111 1111 1111 1111", "card 4111 1111 1111 1111 exp 12/29"),
    ("mastercard dashed", "5555-5555-5555-4444", "pay with 5555-5555-5555-4444"),
    ("amex", "378282246310005", "amex 378282246310005"),
    ("iban", "DE89 3704 0044 0532 0130 00", "transfer to DE89 3704 0044 0532 0130 00"),
    ("iban compact", "GB82WEST12345698765432", "account GB82WEST12345698765432"),
    ("us ssn", "123-45-6789", "SSN 123-45-6789 on file"),
    ("ipv4", "203.0.113.42", "attacker at 203.0.113.42"),
    ("private ipv4", "10.0.12.7", "host 10.0.12.7 is down"),
    ("ipv6", "2001:db8:85a3::8a2e:370:7334", "reach 2001:db8:85a3::8a2e:370:7334"),
)

BENIGN: tuple[str, ...] = (
    "The model considered three options and chose the safest one.",
    "Step 1: read the file. Step 2: count the lines. Step 3: report 42.",
    "In 2024 the committee met 12 times; attendance was 87.5 percent.",
    "Internationalization and counterrevolutionary are long words without digits.",
    "Version 3.11.4 of Python fixed a regression in asyncio.",
    "The user asked how to bake sourdough bread at 230 degrees for 45 minutes.",
    "I should refuse to help synthesize dangerous chemicals and explain why.",
    "Use the function parse_config_file to load settings from config.yaml.",
    "Order #1042 shipped on 2024-03-15 and arrived two days later.",
)

#!/usr/bin/env python3
"""Writes a Django-shaped benchmark project (issue #29) into OUT.

    make_django.py OUT [--apps N] [--files F] [--tests-per-file LO-HI] [--models M]
                       [--weight W] [--rules R] [--python PY] [--small]

A real Django 5.2 project: settings read from the environment with django-environ
(`DATABASE_URL` through `env.db()`), N apps with M models each (a lookup model, a main model,
children with foreign keys, indexes and constraints, cross-app foreign keys), their migrations
made by `manage.py makemigrations` (an initial one, a second one after a schema change) plus a
hand-written data migration, admin, forms, django-filter filter sets, Django REST framework
serializers and viewsets, class-based views with templates, signals, and a generated
openapi-generator-style client package (`--weight` classes, the kind of generated code large
projects import). Importing all of it is what makes every test process spend seconds of CPU
before its first test: the default project's `pytest --collect-only` takes about 4.5 s of CPU
compiling from source (PYTHONDONTWRITEBYTECODE=1, no __pycache__), about 1.7 s with bytecode.

The tests are laid out the Django way: `<app>/tests/test_*.py` in every app but the last, which
keeps a plain `<app>/tests.py` of Django `TestCase` classes. Most files are short (5 to 9 tests
of a few hundredths of a second each: factory-made rows with their children, a request or two
through the test client, serializers; a fraction of a second per file); three are longer (CSV
exports, reports, the admin: seconds each). About 360 tests, 50 ms each on average. They use
pytest-django's `db`, `client` and `admin_client` fixtures, DRF's APIClient and factory_boy,
in-process (no server).

The project's `conftest.py` uses the database DATABASE_URL names as it is (a migrated clone) when
E2E_PLAN_DB names it, as the plan's `[test] env` sets it (`E2E_PLAN_DB = "{db_name}"`, what
`e2e-plan init` writes for a pytest-django project); otherwise pytest-django creates and migrates
its own `test_<name>` database, as usual.

The project's requirements are in OUT/requirements.txt; the generator needs them installed in the
Python it runs `makemigrations` with (`--python`, default: this interpreter). See
scripts/bench/suites/README.md.
"""
import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import textwrap
from string import Template

REQUIREMENTS = """\
Django==5.2.19
django-environ==0.14.0
django-filter==26.2
djangorestframework==3.17.2
factory_boy==3.3.3
Faker==40.63.0
psycopg[binary]==3.3.9
pytest==9.2.0
pytest-django==4.14.0
pytest-xdist==3.8.0
"""

# label, main model, children (the last one is the audit trail the signals write).
APPS = [
    ("catalog", "Product", ["Image", "Variant", "Attribute", "Price", "Tag", "Review", "Bundle",
                            "Supplier", "Note", "Link", "Translation", "Event"]),
    ("orders", "Order", ["Line", "Payment", "Refund", "Discount", "Fee", "Note", "Attachment",
                         "Return", "Split", "Tag", "Comment", "Event"]),
    ("customers", "Customer", ["Address", "Contact", "Preference", "Consent", "Segment", "Note",
                               "Tag", "Document", "Device", "Score", "Link", "Event"]),
    ("inventory", "StockItem", ["Movement", "Count", "Batch", "Reservation", "Transfer",
                                "Adjustment", "Alert", "Bin", "Lot", "Audit", "Note", "Event"]),
    ("billing", "Invoice", ["Line", "Payment", "CreditNote", "Tax", "Reminder", "Dispute", "Note",
                            "Attachment", "Discount", "Installment", "Adjustment", "Event"]),
    ("shipping", "Shipment", ["Parcel", "Label", "Tracking", "Rate", "Carrier", "Stop", "Note",
                              "Document", "Claim", "Insurance", "Return", "Event"]),
    ("promotions", "Campaign", ["Coupon", "Rule", "Target", "Budget", "Creative", "Channel",
                                "Window", "Result", "Note", "Tag", "Variant", "Event"]),
    ("support", "Ticket", ["Message", "Attachment", "Assignment", "Tag", "Rating", "Macro", "Note",
                           "Escalation", "Deadline", "Link", "Watcher", "Event"]),
    ("analytics", "Report", ["Metric", "Dimension", "Condition", "Run", "Export", "Snapshot",
                             "Widget", "Share", "Note", "Tag", "Alert", "Event"]),
    ("notifications", "Message", ["Recipient", "Template", "Delivery", "Bounce", "Preference",
                                  "Channel", "Digest", "Note", "Tag", "Attachment", "Retry",
                                  "Event"]),
    ("content", "Page", ["Block", "Revision", "Image", "Link", "Tag", "Author", "Comment",
                         "Translation", "Menu", "Redirect", "Note", "Event"]),
    ("accounts", "Account", ["Member", "Invite", "Role", "Permission", "ApiKey", "Session",
                             "Setting", "Note", "Tag", "Webhook", "Plan", "Event"]),
]

# Extra fields a child model may carry; all have defaults, so factories and signals need none.
EXTRA_FIELDS = [
    ("code", 'models.CharField(max_length=32, blank=True)'),
    ("notes", 'models.TextField(blank=True)'),
    ("weight", 'models.PositiveIntegerField(default=0)'),
    ("due_on", 'models.DateField(null=True, blank=True)'),
    ("email", 'models.EmailField(blank=True)'),
    ("url", 'models.URLField(blank=True)'),
    ("token", 'models.UUIDField(default=uuid.uuid4, editable=False)'),
    ("ratio", 'models.FloatField(default=0.0)'),
    ("is_enabled", 'models.BooleanField(default=True)'),
    ("payload", 'models.JSONField(default=dict, blank=True)'),
    ("happened_at", 'models.DateTimeField(null=True, blank=True)'),
    ("currency", 'models.CharField(max_length=3, default="EUR")'),
]

SHORT_KINDS = ["models", "views", "api", "serializers", "forms", "filters", "services", "signals",
               "querysets", "permissions"]
LONG_KINDS = ["exports", "reports", "admin"]


def snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def plural(word):
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def T(text, **kw):
    return Template(textwrap.dedent(text).lstrip("\n")).substitute(kw)


class App:
    def __init__(self, index, label, main, nouns, models, prev, legacy):
        self.index = index
        self.label = label
        self.title = label.capitalize()
        self.Main = main
        self.main = snake(main)
        self.mains = plural(self.main)
        self.Kind = main + "Kind"
        self.prev = prev
        self.legacy = legacy
        nouns = nouns[: max(2, models - 2) - 1] + [nouns[-1]]
        self.children = []
        rng = random.Random(f"{label}-fields")
        for i, noun in enumerate(nouns):
            extras = rng.sample(EXTRA_FIELDS, rng.randint(2, 6))
            self.children.append({
                "cls": main + noun,
                "rel": plural(snake(noun)),
                "snake": snake(main + noun),
                "extras": sorted(extras),
                "unique": i % 3 == 1,
            })
        self.Child = self.children[0]["cls"]
        self.child_rel = self.children[0]["rel"]
        self.child = self.children[0]["snake"]
        self.Audit = self.children[-1]["cls"]
        self.audit_rel = self.children[-1]["rel"]

    def vars(self):
        return dict(app=self.label, App=self.title, Main=self.Main, main=self.main,
                    mains=self.mains, Kind=self.Kind, Child=self.Child, child_rel=self.child_rel,
                    child=self.child, Audit=self.Audit, audit_rel=self.audit_rel,
                    factories=f"{self.label}.factories" if self.legacy
                    else f"{self.label}.tests.factories")


def write(root, path, text):
    full = os.path.join(root, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w") as f:
        f.write(text)


# ---------------------------------------------------------------------------------------------
# The project package
# ---------------------------------------------------------------------------------------------

def project_files(out, apps, weight):
    write(out, "requirements.txt", REQUIREMENTS)
    write(out, "manage.py", T('''
        #!/usr/bin/env python
        """Django's command-line utility for administrative tasks."""
        import os
        import sys


        def main():
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
            from django.core.management import execute_from_command_line

            execute_from_command_line(sys.argv)


        if __name__ == "__main__":
            main()
    '''))
    os.chmod(os.path.join(out, "manage.py"), 0o755)
    write(out, "pytest.ini", T('''
        [pytest]
        DJANGO_SETTINGS_MODULE = shop.settings
        python_files = tests.py test_*.py
        addopts = --strict-markers
        filterwarnings =
            ignore::DeprecationWarning:faker.*
    '''))
    write(out, ".env.example", T('''
        # Copy to .env, or export these.
        DATABASE_URL=postgres://postgres@127.0.0.1:5432/shop
        SECRET_KEY=change-me
        DEBUG=1
    '''))
    write(out, "conftest.py", T('''
        """Project-wide pytest configuration.

        pytest-django creates a `test_<name>` database and migrates it at the start of every
        session. Under e2e-plan each test process gets a database of its own, already migrated (a
        clone of a template prepared with `manage.py migrate`), named by DATABASE_URL and by
        E2E_PLAN_DB (the plan's [test] env, as `e2e-plan init` writes it): use it as it is. This is
        pytest-django's documented override for an existing, external database
        (https://pytest-django.readthedocs.io/en/latest/database.html).
        """
        import os

        import pytest

        pytest_plugins = ["shop.testing.fixtures"]

        if os.environ.get("E2E_PLAN_DB"):

            @pytest.fixture(scope="session")
            def django_db_setup():
                """The database DATABASE_URL names is ready: no test database is made."""
                from django.conf import settings

                name = settings.DATABASES["default"]["NAME"]
                if name != os.environ["E2E_PLAN_DB"]:
                    pytest.exit(
                        f"the settings name the database {name!r}, not E2E_PLAN_DB's "
                        f"{os.environ['E2E_PLAN_DB']!r}: read it from DATABASE_URL",
                        returncode=3,
                    )
                yield
    '''))
    write(out, "shop/__init__.py", "")
    write(out, "shop/settings.py", settings_py(apps))
    write(out, "shop/urls.py", urls_py(apps))
    write(out, "shop/wsgi.py", T('''
        import os

        from django.core.wsgi import get_wsgi_application

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
        application = get_wsgi_application()
    '''))
    write(out, "shop/asgi.py", T('''
        import os

        from django.core.asgi import get_asgi_application

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
        application = get_asgi_application()
    '''))
    write(out, "shop/common/__init__.py", "")
    write(out, "shop/common/money.py", T('''
        """Money helpers shared by the apps."""
        from decimal import ROUND_HALF_UP, Decimal

        CENT = Decimal("0.01")


        def quantize(amount):
            return Decimal(amount).quantize(CENT, rounding=ROUND_HALF_UP)


        def percent(amount, rate):
            return quantize(Decimal(amount) * Decimal(rate) / Decimal(100))


        def split(amount, parts):
            """Splits an amount into `parts` shares that add up to it exactly."""
            amount = quantize(amount)
            share = quantize(amount / parts)
            shares = [share] * parts
            shares[-1] = amount - share * (parts - 1)
            return shares
    '''))
    write(out, "shop/integrations/__init__.py", "")
    write(out, "shop/integrations/payments/__init__.py",
          '"""Client of the payment provider\'s API (models generated from its OpenAPI spec)."""\n'
          "from .models import *  # noqa: F401,F403\n")
    for path, text in generated_client(weight).items():
        write(out, f"shop/integrations/payments/{path}", text)
    write(out, "shop/testing/__init__.py", "")
    write(out, "shop/testing/fixtures.py", T('''
        """Fixtures shared by every app's tests (loaded by the root conftest's pytest_plugins)."""
        import factory.random
        import pytest
        from django.contrib.auth.hashers import make_password
        from rest_framework.test import APIClient

        ROLES = ("customer", "staff", "manager")


        @pytest.fixture(scope="session", autouse=True)
        def _deterministic_factories():
            factory.random.reseed_random("e2e-plan-bench")


        @pytest.fixture(scope="session")
        def password_hashes():
            """Hashed once per session with the project's real hasher (PBKDF2, 1,000,000 rounds)."""
            return {role: make_password(f"{role}-password") for role in ROLES}


        @pytest.fixture
        def staff_user(db, django_user_model, password_hashes):
            return django_user_model.objects.create(
                username="staff", email="staff@example.com", is_staff=True,
                password=password_hashes["staff"])


        @pytest.fixture
        def customer_user(db, django_user_model, password_hashes):
            return django_user_model.objects.create(
                username="customer", email="customer@example.com",
                password=password_hashes["customer"])


        @pytest.fixture
        def staff_client(client, staff_user):
            client.force_login(staff_user)
            return client


        @pytest.fixture
        def api_client(staff_user):
            api = APIClient()
            api.force_authenticate(user=staff_user)
            return api


        @pytest.fixture
        def anonymous_api_client():
            return APIClient()
    '''))
    write(out, "shop/testing/factories.py", T('''
        """Factories shared by the apps' tests."""
        import factory
        from factory.django import DjangoModelFactory


        class UserFactory(DjangoModelFactory):
            class Meta:
                model = "auth.User"
                django_get_or_create = ("username",)

            username = factory.Sequence(lambda n: f"user{n:05d}")
            email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
            first_name = factory.Faker("first_name")
            last_name = factory.Faker("last_name")
            password = "!unusable"
    '''))
    write(out, "templates/base.html", T('''
        <!doctype html>
        <html lang="en">
        <head><meta charset="utf-8"><title>{% block title %}Shop{% endblock %}</title></head>
        <body>
          <nav>{% block nav %}<a href="/">Home</a>{% endblock %}</nav>
          <main>{% block content %}{% endblock %}</main>
        </body>
        </html>
    '''))


def settings_py(apps):
    installed = "".join(f'    "{a.label}",\n' for a in apps)
    return T('''
        """Settings for the shop project, read from the environment (12-factor)."""
        from pathlib import Path

        import environ

        BASE_DIR = Path(__file__).resolve().parent.parent
        env = environ.Env(DEBUG=(bool, False))
        environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

        SECRET_KEY = env("SECRET_KEY", default="insecure-bench-key-not-for-production")
        DEBUG = env("DEBUG")
        ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "testserver"])

        INSTALLED_APPS = [
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django.contrib.staticfiles",
            "django.contrib.humanize",
            "rest_framework",
            "django_filters",
        $installed]

        MIDDLEWARE = [
            "django.middleware.security.SecurityMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
            "django.middleware.clickjacking.XFrameOptionsMiddleware",
        ]

        ROOT_URLCONF = "shop.urls"
        WSGI_APPLICATION = "shop.wsgi.application"

        TEMPLATES = [
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "DIRS": [BASE_DIR / "templates"],
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ],
                },
            },
        ]

        DATABASES = {
            "default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/shop"),
        }
        DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)

        CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}
        EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
        vars().update(EMAIL_CONFIG)

        AUTH_PASSWORD_VALIDATORS = [
            {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
            {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
            {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
            {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
        ]

        LANGUAGE_CODE = "en-us"
        TIME_ZONE = env("TIME_ZONE", default="UTC")
        USE_I18N = True
        USE_TZ = True

        STATIC_URL = "static/"
        STATIC_ROOT = BASE_DIR / "staticfiles"
        DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
        LOGIN_URL = "/accounts/login/"

        REST_FRAMEWORK = {
            "DEFAULT_AUTHENTICATION_CLASSES": [
                "rest_framework.authentication.SessionAuthentication",
            ],
            "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
            "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
            "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
            "PAGE_SIZE": 20,
            "TEST_REQUEST_DEFAULT_FORMAT": "json",
        }

        LOGGING = {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"console": {"class": "logging.StreamHandler"}},
            "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="WARNING")},
        }
    ''', installed=installed)


def urls_py(apps):
    imports = "".join(f"from {a.label}.api_urls import router as {a.label}_router\n" for a in apps)
    pages = "".join(f'    path("{a.label}/", include("{a.label}.urls")),\n' for a in apps)
    apis = "".join(f'    path("api/{a.label}/", include(({a.label}_router.urls, "{a.label}-api"))),\n'
                   for a in apps)
    return T('''
        from django.contrib import admin
        from django.urls import include, path
        from django.views.generic import TemplateView

        $imports
        urlpatterns = [
            path("", TemplateView.as_view(template_name="base.html"), name="home"),
            path("admin/", admin.site.urls),
            path("accounts/", include("django.contrib.auth.urls")),
        $pages$apis]
    ''', imports=imports, pages=pages, apis=apis)


def generated_client(weight):
    """An openapi-generator-style client package: {path: text}.

    One module per resource (its status enum and its models), each model a plain class with a
    property (getter and validating setter) per attribute and the generator's to_dict / from_dict
    / __eq__ boilerplate: a lot of code to compile, little to run at import (no dataclasses).
    """
    rng = random.Random("payments-client")
    words = ["Payment", "Refund", "Charge", "Payout", "Dispute", "Balance", "Transfer", "Card",
             "Mandate", "Customer", "Invoice", "Subscription", "Price", "Product", "Tax", "Fee",
             "Account", "Session", "Intent", "Method", "Source", "Token", "Event", "Webhook"]
    suffixes = ["", "Request", "Response", "Create", "Update", "List", "Summary", "Details",
                "Params", "Result", "Item", "Page"]
    types = ["str", "int", "bool", "float", "datetime", "list[str]", "dict(str, object)"]
    fields_pool = ["id", "object", "amount", "currency", "status", "created", "livemode",
                   "description", "metadata", "reference", "customer", "account", "country",
                   "expires_at", "reason", "balance", "fee", "net", "type", "url", "email",
                   "name", "phone", "locale", "version", "attempts", "next_attempt", "tags"]
    statuses = ["pending", "requires_action", "processing", "succeeded", "failed", "canceled",
                "expired", "reversed"]
    by_word = {w: [] for w in words}
    i = 0
    while sum(len(v) for v in by_word.values()) < weight:
        w = words[i % len(words)]
        name = w + suffixes[(i // len(words)) % len(suffixes)]
        if i >= len(words) * len(suffixes):
            name += f"V{i // (len(words) * len(suffixes)) + 1}"
        i += 1
        by_word[w].append(name)

    def camel(f):
        head, *rest = f.split("_")
        return head + "".join(x.capitalize() for x in rest)

    def model(name, fs):
        ts = {f: rng.choice(types) for f in fs}
        o = [f"class {name}(object):",
             f'    """{name}: a model of the payments API (generated; do not edit by hand)."""', "",
             "    openapi_types = {"]
        o += [f'        "{f}": "{ts[f]}",' for f in fs]
        o += ["    }", "", "    attribute_map = {"]
        o += [f'        "{f}": "{camel(f)}",' for f in fs]
        o += ["    }", "",
              f"    def __init__(self, {', '.join(f + '=None' for f in fs)}, local_vars_configuration=None):",
              "        if local_vars_configuration is None:",
              "            local_vars_configuration = Configuration.get_default_copy()",
              "        self.local_vars_configuration = local_vars_configuration", ""]
        o += [f"        self._{f} = None" for f in fs]
        o += ["        self.discriminator = None", ""]
        for f in fs:
            o += [f"        if {f} is not None:", f"            self.{f} = {f}"]
        for f in fs:
            t = ts[f]
            o += ["", "    @property", f"    def {f}(self):",
                  f'        """The {f} of this {name} ({t})."""', f"        return self._{f}", "",
                  f"    @{f}.setter", f"    def {f}(self, {f}):",
                  f'        """Sets the {f} of this {name} ({t})."""',
                  "        validate = self.local_vars_configuration.client_side_validation"]
            if t == "str":
                n = rng.choice([32, 64, 255, 5000])
                o += [f"        if validate and {f} is not None and len({f}) > {n}:",
                      f'            raise ValueError("Invalid value for `{f}`, length must be less than or equal to `{n}`")']
            elif t in ("int", "float"):
                o += [f"        if validate and {f} is not None and {f} < 0:",
                      f'            raise ValueError("Invalid value for `{f}`, must be a value greater than or equal to `0`")']
            elif t == "list[str]":
                o += [f"        if validate and {f} is not None and not all(isinstance(x, str) for x in {f}):",
                      f'            raise TypeError("Invalid value for `{f}`, must be a list of str")']
            elif t == "bool":
                o += [f"        if validate and {f} is not None and not isinstance({f}, bool):",
                      f'            raise TypeError("Invalid value for `{f}`, must be a bool")']
            if f == "status":
                o += [f"        if validate and {f} is not None and {f} not in {tuple(statuses)!r}:",
                      f'            raise ValueError(f"Invalid value for `{f}` ({{{f}}}), must be one of {statuses}")']
            o.append(f"        self._{f} = {f}")
        o.append(f"""
    @classmethod
    def from_dict(cls, data, local_vars_configuration=None):
        \"\"\"A {name} from the API's JSON (camelCase keys).\"\"\"
        if data is None:
            return None
        names = {{v: k for k, v in cls.attribute_map.items()}}
        kwargs = {{names[k]: v for k, v in data.items() if k in names}}
        return cls(local_vars_configuration=local_vars_configuration, **kwargs)

    def to_dict(self, serialize=False):
        \"\"\"The model's properties as a dict (the API's keys when serialize).\"\"\"
        result = {{}}

        def convert(x):
            if hasattr(x, "to_dict"):
                args = getfullargspec(x.to_dict).args
                if len(args) == 1:
                    return x.to_dict()
                return x.to_dict(serialize)
            return x

        for attr, _ in self.openapi_types.items():
            value = getattr(self, attr)
            attr = self.attribute_map.get(attr, attr) if serialize else attr
            if isinstance(value, list):
                result[attr] = list(map(lambda x: convert(x), value))
            elif isinstance(value, dict):
                result[attr] = dict(map(lambda item: (item[0], convert(item[1])), value.items()))
            else:
                result[attr] = convert(value)
        return result

    def to_str(self):
        return pprint.pformat(self.to_dict())

    def __repr__(self):
        return self.to_str()

    def __eq__(self, other):
        if not isinstance(other, {name}):
            return False
        return self.to_dict() == other.to_dict()

    def __ne__(self, other):
        if not isinstance(other, {name}):
            return True
        return self.to_dict() != other.to_dict()
""")
        return "\n".join(o)

    files = {}
    head = '"""Generated from payments-openapi.yaml (v2024-06). Do not edit by hand."""\n'
    files["configuration.py"] = head + T('''
        import copy


        class Configuration:
            """Client settings (a default instance, copied by every model)."""

            _default = None

            def __init__(self, host="https://api.payments.example/v1", client_side_validation=True):
                self.host = host
                self.client_side_validation = client_side_validation

            @classmethod
            def set_default(cls, default):
                cls._default = default

            @classmethod
            def get_default_copy(cls):
                if cls._default is None:
                    cls._default = Configuration()
                return copy.copy(cls._default)
    ''')
    exports = []
    for w in words:
        mod = snake(w)
        names = by_word[w]
        body = [head + "import enum\nimport pprint\nfrom inspect import getfullargspec\n\n"
                "from ..configuration import Configuration\n\n",
                f"class {w}Status(str, enum.Enum):"]
        body += [f'    {x.upper()} = "{x}"' for x in statuses]
        for name in names:
            body += ["", "", model(name, rng.sample(fields_pool, rng.randint(4, 12)))]
        files[f"models/{mod}.py"] = "\n".join(body) + "\n"
        exports.append((mod, [f"{w}Status"] + names))
    init = [head]
    for mod, names in exports:
        init.append(f"from .{mod} import (  # noqa: F401\n"
                    + "".join(f"    {n},\n" for n in names) + ")")
    init.append("\nMODELS = {\n" + "".join(f'    "{n}": {n},\n' for _, ns in exports
                                           for n in ns[1:]) + "}")
    files["models/__init__.py"] = "\n".join(init) + "\n"
    return files


# ---------------------------------------------------------------------------------------------
# An app
# ---------------------------------------------------------------------------------------------

def app_files(out, app, v2, rules):
    v = app.vars()
    p = app.label
    write(out, f"{p}/__init__.py", "")
    write(out, f"{p}/apps.py", T('''
        from django.apps import AppConfig


        class ${App}Config(AppConfig):
            default_auto_field = "django.db.models.BigAutoField"
            name = "$app"
            verbose_name = "$App"

            def ready(self):
                from . import signals  # noqa: F401
    ''', **v))
    write(out, f"{p}/models.py", models_py(app, v2))
    write(out, f"{p}/managers.py", T('''
        from decimal import Decimal

        from django.db import models
        from django.db.models import Count, DecimalField, Q, Sum, Value
        from django.db.models.functions import Coalesce


        class ${Main}QuerySet(models.QuerySet):
            def active(self):
                return self.filter(status="active")

            def featured(self):
                return self.active().filter(is_featured=True)

            def search(self, term):
                return self.filter(Q(name__icontains=term) | Q(slug__icontains=term))

            def with_totals(self):
                return self.annotate(
                    child_count=Count("$child_rel"),
                    child_value=Coalesce(Sum("${child_rel}__value"), Value(Decimal("0.00")),
                                         output_field=DecimalField(max_digits=14, decimal_places=2)),
                )


        class ChildQuerySet(models.QuerySet):
            def for_parent(self, parent):
                return self.filter(**{self.model.parent_field: parent})

            def total_value(self):
                return self.aggregate(total=Coalesce(Sum("value"), Value(Decimal("0.00")),
                                                     output_field=DecimalField()))["total"]
    ''', **v))
    forms = [T('''
        from django import forms

        from . import models

        RESERVED_NAMES = {"admin", "api", "new", "edit", "export.csv"}


        class ${Main}Form(forms.ModelForm):
            class Meta:
                model = models.$Main
                fields = ["name", "slug", "status", "kind", "amount", "quantity", "is_featured"]

            def clean_name(self):
                name = self.cleaned_data["name"].strip()
                if name.lower() in RESERVED_NAMES:
                    raise forms.ValidationError("This name is reserved.")
                return name

            def clean(self):
                data = super().clean()
                if data.get("status") == "active" and data.get("quantity") == 0 and data.get("is_featured"):
                    raise forms.ValidationError("A featured active $main needs stock.")
                return data
    ''', **v)]
    filters = [T('''
        import django_filters

        from . import models


        class ${Main}Filter(django_filters.FilterSet):
            name = django_filters.CharFilter(lookup_expr="icontains")
            min_amount = django_filters.NumberFilter(field_name="amount", lookup_expr="gte")
            max_amount = django_filters.NumberFilter(field_name="amount", lookup_expr="lte")
            created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")

            class Meta:
                model = models.$Main
                fields = ["status", "kind", "is_featured"]
    ''', **v)]
    sers = [T('''
        from rest_framework import serializers

        from . import models


        class ${Main}Serializer(serializers.ModelSerializer):
            total_value = serializers.DecimalField(max_digits=14, decimal_places=2, read_only=True)

            class Meta:
                model = models.$Main
                fields = ["id", "name", "slug", "status", "kind", "amount", "quantity",
                          "is_featured", "metadata", "total_value", "created_at"]
                read_only_fields = ["created_at"]

            def validate_slug(self, value):
                return value.lower()
    ''', **v)]
    viewsets = []
    admins = [T('''
        from django.contrib import admin

        from . import forms, models
    ''')]
    inlines = []
    registrations = []
    for c in app.children:
        cv = dict(v, C=c["cls"], c=c["snake"])
        forms.append(T('''

            class ${C}Form(forms.ModelForm):
                class Meta:
                    model = models.$C
                    fields = ["$main", "label", "position", "value"]
        ''', **cv))
        filters.append(T('''

            class ${C}Filter(django_filters.FilterSet):
                class Meta:
                    model = models.$C
                    fields = {"label": ["exact", "icontains"], "position": ["exact", "lt", "gt"],
                              "$main": ["exact"], "value": ["gte", "lte"]}
        ''', **cv))
        sers.append(T('''

            class ${C}Serializer(serializers.ModelSerializer):
                class Meta:
                    model = models.$C
                    fields = "__all__"
        ''', **cv))
        viewsets.append(T('''

            class ${C}ViewSet(viewsets.ModelViewSet):
                queryset = models.${C}.objects.select_related("$main")
                serializer_class = serializers.${C}Serializer
                filterset_class = filters.${C}Filter
        ''', **cv))
        if len(inlines) < 2:
            inlines.append(c["cls"] + "Inline")
            admins.append(T('''

                class ${C}Inline(admin.TabularInline):
                    model = models.$C
                    extra = 0
            ''', **cv))
        registrations.append(T('''

            @admin.register(models.$C)
            class ${C}Admin(admin.ModelAdmin):
                form = forms.${C}Form
                list_display = ("label", "$main", "position", "value", "created_at")
                list_select_related = ("$main",)
                list_filter = ("created_at",)
                search_fields = ("label", "${main}__name")
                raw_id_fields = ("$main",)
        ''', **cv))
    admins.append(T('''


        @admin.register(models.$Kind)
        class ${Kind}Admin(admin.ModelAdmin):
            list_display = ("code", "label", "position")
            ordering = ("position",)


        @admin.register(models.$Main)
        class ${Main}Admin(admin.ModelAdmin):
            form = forms.${Main}Form
            list_display = ("name", "slug", "status", "amount", "quantity", "is_featured", "created_at")
            list_filter = ("status", "is_featured", "kind")
            search_fields = ("name", "slug")
            prepopulated_fields = {"slug": ("name",)}
            date_hierarchy = "created_at"
            inlines = [$inlines]
    ''', inlines=", ".join(inlines), **v))
    write(out, f"{p}/forms.py", "".join(forms))
    write(out, f"{p}/filters.py", "".join(filters))
    write(out, f"{p}/serializers.py", "".join(sers))
    write(out, f"{p}/admin.py", "".join(admins) + "".join(registrations))
    write(out, f"{p}/views.py", T('''
        import csv

        from django.contrib.auth.mixins import LoginRequiredMixin
        from django.http import JsonResponse, StreamingHttpResponse
        from django.views.generic import DetailView, ListView, TemplateView
        from rest_framework import viewsets

        from . import filters, models, serializers, services


        class ${Main}ListView(ListView):
            model = models.$Main
            paginate_by = 25

            def get_queryset(self):
                qs = models.${Main}.objects.select_related("kind")
                status = self.request.GET.get("status")
                if status:
                    qs = qs.filter(status=status)
                return qs


        class ${Main}DetailView(DetailView):
            model = models.$Main
            slug_url_kwarg = "slug"

            def get_queryset(self):
                return models.${Main}.objects.prefetch_related("$child_rel")


        class DashboardView(LoginRequiredMixin, TemplateView):
            template_name = "$app/dashboard.html"

            def get_context_data(self, **kwargs):
                context = super().get_context_data(**kwargs)
                context["summary"] = services.summarize()
                return context


        def summary(request):
            return JsonResponse(services.summarize())


        class _Echo:
            def write(self, value):
                return value


        def export_csv(request):
            qs = models.${Main}.objects.order_by("id")
            status = request.GET.get("status")
            if status:
                qs = qs.filter(status=status)
            rows = qs.values_list("id", "name", "slug", "status", "amount", "quantity")
            writer = csv.writer(_Echo())

            def lines():
                yield writer.writerow(["id", "name", "slug", "status", "amount", "quantity"])
                for row in rows.iterator(chunk_size=500):
                    yield writer.writerow(row)

            response = StreamingHttpResponse(lines(), content_type="text/csv")
            response["Content-Disposition"] = 'attachment; filename="${mains}.csv"'
            return response


        class ${Main}ViewSet(viewsets.ModelViewSet):
            queryset = models.${Main}.objects.select_related("kind")
            serializer_class = serializers.${Main}Serializer
            filterset_class = filters.${Main}Filter
            lookup_field = "slug"

            def perform_create(self, serializer):
                serializer.save(owner=self.request.user)
    ''', **v) + "".join(viewsets))
    write(out, f"{p}/urls.py", T('''
        from django.urls import path

        from . import views

        app_name = "$app"

        urlpatterns = [
            path("", views.${Main}ListView.as_view(), name="list"),
            path("dashboard/", views.DashboardView.as_view(), name="dashboard"),
            path("summary/", views.summary, name="summary"),
            path("export.csv", views.export_csv, name="export"),
            path("<slug:slug>/", views.${Main}DetailView.as_view(), name="detail"),
        ]
    ''', **v))
    regs = "".join(f'router.register("{c["rel"].replace("_", "-")}", views.{c["cls"]}ViewSet, '
                   f'basename="{c["snake"]}")\n' for c in app.children)
    write(out, f"{p}/api_urls.py", T('''
        from rest_framework.routers import DefaultRouter

        from . import views

        router = DefaultRouter()
        router.register("$mains", views.${Main}ViewSet, basename="$main")
        $regs''', regs=regs, **v))
    write(out, f"{p}/signals.py", T('''
        from django.db.models.signals import post_save
        from django.dispatch import receiver

        from .models import $Audit, $Main


        @receiver(post_save, sender=$Main, dispatch_uid="${app}_record_creation")
        def record_creation(sender, instance, created, raw=False, **kwargs):
            if created and not raw:
                ${Audit}.objects.create($main=instance, label="created")
    ''', **v))
    write(out, f"{p}/services.py", services_py(app, rules))
    write(out, f"{p}/templates/{p}/{app.main.replace('_', '')}_list.html", T('''
        {% extends "base.html" %}
        {% load humanize %}
        {% block title %}$App{% endblock %}
        {% block content %}
        <h1>$App</h1>
        <table>
          <tr><th>Name</th><th>Status</th><th>Amount</th><th>Quantity</th></tr>
          {% for object in object_list %}
          <tr><td><a href="{{ object.get_absolute_url }}">{{ object.name }}</a></td>
              <td>{{ object.get_status_display }}</td><td>{{ object.amount }}</td>
              <td>{{ object.quantity|intcomma }}</td></tr>
          {% empty %}
          <tr><td colspan="4">Nothing yet.</td></tr>
          {% endfor %}
        </table>
        {% if is_paginated %}<p>Page {{ page_obj.number }} of {{ paginator.num_pages }}</p>{% endif %}
        {% endblock %}
    ''', **v))
    write(out, f"{p}/templates/{p}/{app.main.replace('_', '')}_detail.html", T('''
        {% extends "base.html" %}
        {% block title %}{{ object.name }}{% endblock %}
        {% block content %}
        <h1>{{ object.name }}</h1>
        <p>Status: {{ object.get_status_display }}. Total value: {{ object.total_value }}</p>
        <ul>
          {% for child in object.${child_rel}.all %}<li>{{ child.label }} ({{ child.value }})</li>{% endfor %}
        </ul>
        {% endblock %}
    ''', **v))
    write(out, f"{p}/templates/{p}/dashboard.html", T('''
        {% extends "base.html" %}
        {% block content %}
        <h1>$App dashboard</h1>
        <p>Total: {{ summary.count }} ({{ summary.total }})</p>
        <ul>{% for status, n in summary.by_status.items %}<li>{{ status }}: {{ n }}</li>{% endfor %}</ul>
        {% endblock %}
    ''', **v))
    write(out, f"{p}/migrations/__init__.py", "")


def models_py(app, v2):
    v = app.vars()
    prev = ""
    if app.prev:
        prev = (f'    {app.prev.main} = models.ForeignKey("{app.prev.label}.{app.prev.Main}", '
                f'null=True, blank=True,\n        on_delete=models.SET_NULL, '
                f'related_name="{app.mains}")\n')
    ext = ('    external_ref = models.CharField(max_length=64, blank=True, default="")\n'
           if v2 else "")
    ext_idx = ('            models.Index(fields=["external_ref"], name="' + app.label[:10]
               + '_' + app.main[:10] + '_ext_idx"),\n' if v2 else "")
    out = [T('''
        import uuid
        from decimal import Decimal

        from django.conf import settings
        from django.core.validators import MinValueValidator
        from django.db import models
        from django.urls import reverse

        from .managers import ChildQuerySet, ${Main}QuerySet


        class ${Kind}(models.Model):
            code = models.SlugField(max_length=32, unique=True)
            label = models.CharField(max_length=100)
            position = models.PositiveSmallIntegerField(default=0)

            class Meta:
                ordering = ["position", "code"]

            def __str__(self):
                return self.label


        class ${Main}(models.Model):
            class Status(models.TextChoices):
                DRAFT = "draft", "Draft"
                ACTIVE = "active", "Active"
                ARCHIVED = "archived", "Archived"

            name = models.CharField(max_length=200)
            slug = models.SlugField(max_length=200, unique=True)
            status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
            kind = models.ForeignKey($Kind, null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="$mains")
            amount = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0.00"),
                                         validators=[MinValueValidator(Decimal("0.00"))])
            quantity = models.PositiveIntegerField(default=0)
            is_featured = models.BooleanField(default=False)
            metadata = models.JSONField(default=dict, blank=True)
            owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                      on_delete=models.SET_NULL, related_name="owned_$mains")
        $prev$ext    created_at = models.DateTimeField(auto_now_add=True)
            updated_at = models.DateTimeField(auto_now=True)

            objects = ${Main}QuerySet.as_manager()

            class Meta:
                ordering = ["name", "id"]
                indexes = [
                    models.Index(fields=["status", "name"], name="${app}_status_name_idx"),
        $ext_idx        ]
                constraints = [
                    models.CheckConstraint(condition=models.Q(amount__gte=0),
                                           name="${app}_${main}_amount_gte_0"),
                ]

            def __str__(self):
                return self.name

            def get_absolute_url(self):
                return reverse("$app:detail", kwargs={"slug": self.slug})

            @property
            def total_value(self):
                return self.amount * self.quantity
    ''', prev=prev, ext=ext, ext_idx=ext_idx, **v)]
    for c in app.children:
        extras = "".join(f"    {n} = {d}\n" for n, d in c["extras"])
        constraints = ""
        if c["unique"]:
            constraints = (f'        constraints = [\n            models.UniqueConstraint('
                           f'fields=["{app.main}", "label"], name="{c["snake"][:40]}_uniq"),\n'
                           f'        ]\n')
        out.append(T('''


            class ${C}(models.Model):
                parent_field = "$main"

                $main = models.ForeignKey($Main, on_delete=models.CASCADE, related_name="$rel")
                label = models.CharField(max_length=120)
                position = models.PositiveSmallIntegerField(default=0)
                value = models.DecimalField(max_digits=10, decimal_places=2, default=Decimal("0.00"))
            $extras    created_at = models.DateTimeField(auto_now_add=True)

                objects = ChildQuerySet.as_manager()

                class Meta:
                    ordering = ["position", "id"]
                    indexes = [models.Index(fields=["$main", "position"], name="${idx}_pos_idx")]
            $constraints
                def __str__(self):
                    return f"{self.$main} / {self.label}"
        ''', C=c["cls"], rel=c["rel"], extras=extras, constraints=constraints,
            idx=c["snake"][:22], **v))
    return "".join(out)


def services_py(app, rules):
    v = app.vars()
    rng = random.Random(f"{app.label}-rules")
    adjectives = ["Bulk", "Seasonal", "Loyalty", "Regional", "Weekend", "Clearance", "Premium",
                  "Starter", "Partner", "Holiday", "Launch", "Volume", "Member", "Flash",
                  "Bundle", "Referral", "Student", "Wholesale", "Trial", "Anniversary"]
    subjects = ["Amount", "Quantity", "Margin", "Surcharge", "Rebate", "Cap", "Floor", "Credit"]
    out = [T('''
        """Business rules and reports for $app (pricing rules are data, evaluated in order)."""
        import enum
        from dataclasses import dataclass
        from decimal import Decimal

        from django.db.models import Avg, Count, Max, Sum

        from shop.common.money import percent, quantize
        from shop.integrations import payments

        from .models import $Child, $Main


        class Tier(enum.IntEnum):
            BRONZE = 1
            SILVER = 2
            GOLD = 3
            PLATINUM = 4


    ''', **v)]
    names = []
    for i in range(rules):
        name = f"{adjectives[i % len(adjectives)]}{subjects[(i // len(adjectives)) % len(subjects)]}Rule"
        if i >= len(adjectives) * len(subjects):
            name += str(i // (len(adjectives) * len(subjects)) + 1)
        names.append(name)
        threshold = rng.randint(1, 400)
        rate = rng.choice([1, 2, 3, 5, 7, 10])
        min_qty = rng.randint(0, 20)
        tier = rng.choice(["BRONZE", "SILVER", "GOLD", "PLATINUM"])
        out.append(T('''
            @dataclass(frozen=True)
            class $name:
                """${rate}% off from $threshold.00 and $min_qty units ($tier and up)."""
                threshold: Decimal = Decimal("$threshold.00")
                rate: Decimal = Decimal("$rate")
                min_quantity: int = $min_qty
                tier: Tier = Tier.$tier

                def applies(self, amount, quantity, tier=Tier.BRONZE):
                    return amount >= self.threshold and quantity >= self.min_quantity and tier >= self.tier

                def discount(self, amount):
                    return percent(amount, self.rate)


        ''', name=name, threshold=threshold, rate=rate, min_qty=min_qty, tier=tier))
    out.append("RULES = (\n" + "".join(f"    {n}(),\n" for n in names) + ")\n")
    out.append(T('''


        def best_discount(amount, quantity, tier=Tier.BRONZE):
            """The largest discount any rule grants (never more than the amount)."""
            amount = quantize(amount)
            best = Decimal("0.00")
            for rule in RULES:
                if rule.applies(amount, quantity, tier):
                    best = max(best, rule.discount(amount))
            return min(best, amount)


        def price(amount, quantity, tier=Tier.BRONZE):
            total = quantize(Decimal(amount) * quantity)
            return total - best_discount(total, quantity, tier)


        def settlement_status(raw):
            """The payment provider's status for a settlement, as its client models it."""
            return payments.PaymentStatus(raw)


        def summarize():
            agg = ${Main}.objects.aggregate(count=Count("id"), total=Sum("amount"),
                                            average=Avg("amount"), max_quantity=Max("quantity"))
            by_status = dict(${Main}.objects.order_by().values_list("status").annotate(n=Count("id")))
            return {
                "count": agg["count"],
                "total": str(quantize(agg["total"] or 0)),
                "average": str(quantize(agg["average"] or 0)),
                "max_quantity": agg["max_quantity"] or 0,
                "by_status": by_status,
                "children": ${Child}.objects.count(),
            }
    ''', **v))
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Migrations
# ---------------------------------------------------------------------------------------------

def seed_migration(app, after):
    return T('''
        from django.db import migrations

        KINDS = [("standard", "Standard", 1), ("express", "Express", 2), ("legacy", "Legacy", 3)]


        def add_kinds(apps, schema_editor):
            Kind = apps.get_model("$app", "$Kind")
            for code, label, position in KINDS:
                Kind.objects.update_or_create(code=code, defaults={"label": label, "position": position})


        def remove_kinds(apps, schema_editor):
            apps.get_model("$app", "$Kind").objects.filter(code__in=[k[0] for k in KINDS]).delete()


        class Migration(migrations.Migration):
            dependencies = [("$app", "$after")]

            operations = [migrations.RunPython(add_kinds, remove_kinds)]
    ''', after=after, **app.vars())


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------

def factories_py(app):
    out = [T('''
        """factory_boy factories for $app."""
        import factory
        from django.utils.text import slugify
        from factory.django import DjangoModelFactory

        from $app import models
        from shop.testing.factories import UserFactory


        class ${Kind}Factory(DjangoModelFactory):
            class Meta:
                model = models.$Kind
                django_get_or_create = ("code",)

            code = factory.Sequence(lambda n: f"kind-{n}")
            label = factory.Faker("word")
            position = factory.Sequence(lambda n: 10 + n)


        class ${Main}Factory(DjangoModelFactory):
            class Meta:
                model = models.$Main
                skip_postgeneration_save = True

            name = factory.Sequence(lambda n: f"$Main {n:05d}")
            slug = factory.LazyAttribute(lambda o: slugify(o.name))
            status = models.${Main}.Status.ACTIVE
            amount = factory.Faker("pydecimal", left_digits=4, right_digits=2, positive=True)
            quantity = factory.Faker("pyint", min_value=1, max_value=50)
            metadata = factory.Dict({"source": "factory"})
            owner = factory.SubFactory(UserFactory)
    ''', **app.vars())]
    # A realistic object comes with some of its children (not the ones the tests count).
    for c in app.children[1:4]:
        if c is not app.children[-1]:
            out.append(f'    {c["rel"]} = factory.RelatedFactoryList("{app.vars()["factories"]}.{c["cls"]}Factory",\n'
                       f'                                          factory_related_name="{app.main}", size=3)\n')
    for c in app.children:
        out.append(T('''


            class ${C}Factory(DjangoModelFactory):
                class Meta:
                    model = models.$C

                $main = factory.SubFactory(${Main}Factory)
                label = factory.Sequence(lambda n: f"label-{n}")
                position = factory.Sequence(lambda n: n % 100)
                value = factory.Faker("pydecimal", left_digits=3, right_digits=2, positive=True)
        ''', C=c["cls"], **app.vars()))
    return "".join(out)


HEADER = {
    "models": '''
        from decimal import Decimal

        import pytest
        from django.db import IntegrityError, transaction
        from django.db.models import ProtectedError

        from $app.models import $Audit, $Child, $Kind, $Main
        from $factories import ${Child}Factory, ${Main}Factory

        pytestmark = pytest.mark.django_db
    ''',
    "views": '''
        import pytest
        from django.urls import reverse
        from pytest_django.asserts import assertContains, assertNotContains, assertRedirects

        from $factories import ${Child}Factory, ${Main}Factory

        pytestmark = pytest.mark.django_db
    ''',
    "api": '''
        from decimal import Decimal

        import pytest
        from django.urls import reverse

        from $app.models import $Child, $Main
        from $factories import ${Child}Factory, ${Main}Factory

        pytestmark = pytest.mark.django_db
    ''',
    "forms": '''
        from decimal import Decimal

        import pytest

        from $app.forms import ${Child}Form, ${Main}Form
        from $app.models import $Child, $Kind, $Main
        from $factories import ${Main}Factory

        pytestmark = pytest.mark.django_db


        def data(**overrides):
            values = {"name": "Sturdy thing", "slug": "sturdy-thing", "status": "active",
                      "amount": "19.90", "quantity": 4, "is_featured": False}
            values.update(overrides)
            return values
    ''',
    "filters": '''
        from decimal import Decimal

        import pytest

        from $app.filters import ${Child}Filter, ${Main}Filter
        from $app.models import $Child, $Kind, $Main
        from $factories import ${Child}Factory, ${Main}Factory

        pytestmark = pytest.mark.django_db
    ''',
    "services": '''
        from decimal import Decimal

        import pytest

        from $app import services
        from $factories import ${Child}Factory, ${Main}Factory
        from shop.common.money import quantize, split
        from shop.integrations import payments
    ''',
    "signals": '''
        import pytest

        from $app.models import $Audit, $Main
        from $app.signals import record_creation
        from $factories import ${Main}Factory

        pytestmark = pytest.mark.django_db
    ''',
    "serializers": '''
        from decimal import Decimal

        import pytest

        from $app.models import $Child, $Main
        from $app.serializers import ${Child}Serializer, ${Main}Serializer
        from $factories import ${Child}Factory, ${Main}Factory

        pytestmark = pytest.mark.django_db
    ''',
    "querysets": '''
        from decimal import Decimal

        import pytest

        from $app.models import $Child, $Main
        from $factories import ${Child}Factory, ${Main}Factory

        pytestmark = pytest.mark.django_db
    ''',
    "permissions": '''
        import pytest
        from django.urls import reverse

        from $factories import ${Main}Factory

        pytestmark = pytest.mark.django_db
    ''',
    "exports": '''
        import csv
        import io
        from decimal import Decimal

        import pytest
        from django.urls import reverse

        from $app.models import $Main

        pytestmark = pytest.mark.django_db


        def make(n, status):
            return $Main.objects.bulk_create(
                $Main(name=f"Export {status} {i:05d}", slug=f"export-{status}-{i}", status=status,
                      amount=Decimal(i % 500) + Decimal("0.25"), quantity=i % 17)
                for i in range(n))


        def read(response):
            body = b"".join(response.streaming_content).decode()
            return list(csv.reader(io.StringIO(body)))
    ''',
    "reports": '''
        import csv
        import io
        from decimal import Decimal

        import pytest
        from django.urls import reverse

        from $app import services
        from $app.models import $Child, $Main

        pytestmark = pytest.mark.django_db
        STATUSES = ["draft", "active", "archived"]
    ''',
    "admin": '''
        import pytest
        from django.urls import reverse

        from $app.models import $Main
        from $factories import ${Child}Factory, ${Main}Factory

        pytestmark = pytest.mark.django_db
    ''',
}

CASES = {
    "models": [
        '''
        def test_str_is_the_name():
            assert str(${Main}Factory(name="Blue widget")) == "Blue widget"
        ''', '''
        def test_slug_is_unique():
            ${Main}Factory(slug="same-slug")
            with pytest.raises(IntegrityError), transaction.atomic():
                ${Main}Factory(slug="same-slug")
            assert $Main.objects.filter(slug="same-slug").count() == 1
        ''', '''
        def test_children_are_deleted_with_their_parent():
            items = ${Main}Factory.create_batch(3)
            for item in items:
                ${Child}Factory.create_batch(6, $main=item)
            items[0].delete()
            assert $Child.objects.count() == 12
            assert not $Child.objects.filter($main=items[0].pk).exists()
        ''', '''
        def test_amount_cannot_be_negative():
            with pytest.raises(IntegrityError), transaction.atomic():
                ${Main}Factory(amount=Decimal("-1.00"))
        ''', '''
        def test_seeded_kinds_are_there():
            kinds = {kind.code: kind for kind in $Kind.objects.all()}
            assert {"standard", "express", "legacy"} <= set(kinds)
            for kind in kinds.values():
                ${Main}Factory.create_batch(2, kind=kind)
            assert all(kind.${mains}.count() == 2 for kind in kinds.values())
        ''', '''
        def test_total_value():
            items = [${Main}Factory(amount=Decimal(f"{i}.50"), quantity=i) for i in range(1, 9)]
            assert [item.total_value for item in items] == [Decimal(f"{i}.50") * i for i in range(1, 9)]
            stored = $Main.objects.filter(pk__in=[item.pk for item in items])
            assert sum(item.total_value for item in stored) == sum(Decimal(f"{i}.50") * i for i in range(1, 9))
        ''', '''
        def test_creation_is_audited():
            items = ${Main}Factory.create_batch(5)
            for item in items:
                assert list($Audit.objects.filter($main=item).values_list("label", flat=True)) == ["created"]
        ''', '''
        def test_default_ordering_is_by_name():
            names = ["Pear", "Apple", "Fig", "Banana", "Cherry", "Date", "Elderberry", "Grape", "Kiwi", "Lime"]
            for name in names:
                ${Main}Factory(name=name)
            assert list($Main.objects.values_list("name", flat=True)) == sorted(names)
        ''', '''
        def test_children_keep_their_order():
            item = ${Main}Factory()
            positions = [7, 3, 11, 1, 9, 5, 2, 10, 4, 8, 6, 12]
            for position in positions:
                ${Child}Factory($main=item, position=position)
            assert [c.position for c in item.${child_rel}.all()] == sorted(positions)
        ''', '''
        def test_absolute_url_uses_the_slug():
            assert ${Main}Factory(slug="abc").get_absolute_url() == "/$app/abc/"
        ''', '''
        def test_kind_is_protected():
            kind = $Kind.objects.create(code="temporary", label="Temporary")
            ${Main}Factory.create_batch(3, kind=kind)
            with pytest.raises(ProtectedError), transaction.atomic():
                kind.delete()
            assert kind.${mains}.count() == 3
        ''', '''
        def test_bulk_status_change():
            items = ${Main}Factory.create_batch(12, status="draft")
            $Main.objects.filter(pk__in=[item.pk for item in items[:5]]).update(status="archived")
            assert $Main.objects.filter(status="archived").count() == 5
            assert not $Main.objects.active().exists()
        ''',
    ],
    "views": [
        '''
        def test_list_shows_items(client):
            ${Main}Factory.create_batch(8)
            ${Main}Factory(name="First thing")
            ${Main}Factory(name="Second thing")
            response = client.get(reverse("$app:list"))
            assertContains(response, "First thing")
            assertContains(response, "Second thing")
            assert len(response.context["object_list"]) == 10
        ''', '''
        def test_list_filters_by_status(client):
            ${Main}Factory(name="Shown thing", status="active")
            ${Main}Factory(name="Hidden thing", status="archived")
            ${Main}Factory.create_batch(8, status="archived")
            response = client.get(reverse("$app:list"), {"status": "active"})
            assertContains(response, "Shown thing")
            assertNotContains(response, "Hidden thing")
            assert len(response.context["object_list"]) == 1
        ''', '''
        @pytest.mark.django_db
        def test_unknown_slug_is_404(client):
            assert client.get(reverse("$app:detail", kwargs={"slug": "nope"})).status_code == 404
        ''', '''
        def test_list_is_paginated(client):
            ${Main}Factory.create_batch(30)
            response = client.get(reverse("$app:list"))
            assertContains(response, "Page 1 of 2")
            second = client.get(reverse("$app:list"), {"page": 2})
            assert len(second.context["object_list"]) == 5
        ''', '''
        def test_detail_lists_children(client):
            item = ${Main}Factory(name="Parent thing")
            for i in range(10):
                ${Child}Factory($main=item, label=f"child-{i:02d}")
            response = client.get(item.get_absolute_url())
            assertContains(response, "Parent thing")
            for i in range(10):
                assertContains(response, f"child-{i:02d}")
        ''', '''
        @pytest.mark.django_db
        def test_dashboard_needs_login(client):
            url = reverse("$app:dashboard")
            assertRedirects(client.get(url), f"/accounts/login/?next={url}",
                            fetch_redirect_response=False)
        ''', '''
        def test_dashboard_shows_totals(staff_client):
            ${Main}Factory.create_batch(7, status="active")
            ${Main}Factory.create_batch(5, status="draft")
            response = staff_client.get(reverse("$app:dashboard"))
            assertContains(response, "Total: 12")
            assertContains(response, "active: 7")
            assertContains(response, "draft: 5")
        ''', '''
        def test_every_detail_page_renders(client):
            items = ${Main}Factory.create_batch(6)
            for item in items:
                ${Child}Factory.create_batch(2, $main=item)
                assertContains(client.get(item.get_absolute_url()), item.name)
        ''', '''
        def test_summary_json(client):
            ${Main}Factory.create_batch(6, status="draft")
            ${Main}Factory.create_batch(3, status="active")
            data = client.get(reverse("$app:summary")).json()
            assert data["count"] == 9
            assert data["by_status"] == {"draft": 6, "active": 3}
        ''', '''
        def test_export_csv(client):
            ${Main}Factory.create_batch(15)
            response = client.get(reverse("$app:export"))
            lines = b"".join(response.streaming_content).decode().splitlines()
            assert len(lines) == 16
            assert lines[0] == "id,name,slug,status,amount,quantity"
        ''',
    ],
    "api": [
        '''
        def test_list(api_client):
            ${Main}Factory.create_batch(12)
            response = api_client.get(reverse("$app-api:$main-list"))
            assert response.status_code == 200
            assert response.json()["count"] == 12
            assert len(response.json()["results"]) == 12
        ''', '''
        def test_create_sets_the_owner(api_client, staff_user):
            payload = {"name": "Made by API", "slug": "Made-By-API", "status": "active",
                       "amount": "12.50", "quantity": 3}
            response = api_client.post(reverse("$app-api:$main-list"), payload, format="json")
            assert response.status_code == 201, response.content
            item = $Main.objects.get(slug="made-by-api")
            assert item.owner == staff_user
            assert response.json()["total_value"] == "37.50"
        ''', '''
        def test_list_pages(api_client):
            ${Main}Factory.create_batch(25)
            url = reverse("$app-api:$main-list")
            first = api_client.get(url).json()
            second = api_client.get(url, {"page": 2}).json()
            assert (len(first["results"]), len(second["results"])) == (20, 5)
            assert not {r["slug"] for r in first["results"]} & {r["slug"] for r in second["results"]}
        ''', '''
        def test_retrieve_by_slug(api_client):
            for item in ${Main}Factory.create_batch(4):
                response = api_client.get(reverse("$app-api:$main-detail", kwargs={"slug": item.slug}))
                assert response.json()["name"] == item.name
        ''', '''
        def test_negative_amount_is_refused(api_client):
            payload = {"name": "Bad", "slug": "bad", "amount": "-3.00", "quantity": 1}
            response = api_client.post(reverse("$app-api:$main-list"), payload, format="json")
            assert response.status_code == 400
            assert "amount" in response.json()
        ''', '''
        def test_partial_update(api_client):
            item = ${Main}Factory(quantity=1)
            url = reverse("$app-api:$main-detail", kwargs={"slug": item.slug})
            assert api_client.patch(url, {"quantity": 9}, format="json").status_code == 200
            item.refresh_from_db()
            assert item.quantity == 9
        ''', '''
        def test_filter_by_status(api_client):
            ${Main}Factory.create_batch(6, status="draft")
            ${Main}Factory.create_batch(8, status="active")
            response = api_client.get(reverse("$app-api:$main-list"), {"status": "active"})
            assert response.json()["count"] == 8
        ''', '''
        def test_delete(api_client):
            items = ${Main}Factory.create_batch(3)
            url = reverse("$app-api:$main-detail", kwargs={"slug": items[0].slug})
            assert api_client.delete(url).status_code == 204
            assert list($Main.objects.order_by("pk").values_list("pk", flat=True)) == [i.pk for i in items[1:]]
        ''', '''
        def test_children_endpoint(api_client):
            items = ${Main}Factory.create_batch(3)
            for item in items:
                ${Child}Factory.create_batch(4, $main=item)
            response = api_client.get(reverse("$app-api:$child-list"), {"$main": items[1].pk})
            assert response.json()["count"] == 4
        ''', '''
        def test_create_child(api_client):
            item = ${Main}Factory()
            payload = {"$main": item.pk, "label": "via-api", "position": 2, "value": "4.20"}
            response = api_client.post(reverse("$app-api:$child-list"), payload, format="json")
            assert response.status_code == 201, response.content
            assert $Child.objects.for_parent(item).total_value() == Decimal("4.20")
        ''', '''
        def test_create_many(api_client):
            url = reverse("$app-api:$main-list")
            for i in range(6):
                payload = {"name": f"Posted {i}", "slug": f"posted-{i}", "status": "active",
                           "amount": f"{i}.25", "quantity": i + 1}
                assert api_client.post(url, payload, format="json").status_code == 201
            assert api_client.get(url, {"status": "active"}).json()["count"] == 6
        ''',
    ],
    "forms": [
        '''
        def test_valid_form_saves():
            form = ${Main}Form(data=data())
            assert form.is_valid(), form.errors
            assert form.save().slug == "sturdy-thing"
        ''', '''
        def test_many_valid_forms_save():
            for i in range(10):
                form = ${Main}Form(data=data(name=f"Thing {i}", slug=f"thing-{i}", quantity=i + 1))
                assert form.is_valid(), form.errors
                form.save()
            assert $Main.objects.count() == 10
        ''', '''
        def test_name_is_required():
            form = ${Main}Form(data=data(name=""))
            assert not form.is_valid()
            assert "name" in form.errors
        ''', '''
        def test_duplicate_slug_is_refused():
            ${Main}Factory.create_batch(4)
            ${Main}Factory(slug="taken")
            form = ${Main}Form(data=data(slug="taken"))
            assert "slug" in form.errors
        ''', '''
        def test_reserved_names_are_refused():
            for name in ("Admin", "api", "NEW", "edit"):
                form = ${Main}Form(data=data(name=name))
                assert form.errors["name"] == ["This name is reserved."]
        ''', '''
        def test_edit_existing():
            item = ${Main}Factory(name="Before")
            form = ${Main}Form(data=data(name="After", slug=item.slug), instance=item)
            assert form.is_valid(), form.errors
            form.save()
            item.refresh_from_db()
            assert item.name == "After"
        ''', '''
        def test_negative_amount_is_refused():
            assert "amount" in ${Main}Form(data=data(amount="-1")).errors
        ''', '''
        def test_featured_active_needs_stock():
            form = ${Main}Form(data=data(quantity=0, is_featured=True))
            assert not form.is_valid()
            assert form.non_field_errors()
        ''', '''
        def test_kind_choices_come_from_the_database():
            for code in ("bulk", "gift", "sample"):
                $Kind.objects.create(code=code, label=code.title(), position=10)
            form = ${Main}Form()
            labels = [label for _, label in form.fields["kind"].choices][1:]
            assert labels == list($Kind.objects.values_list("label", flat=True))
        ''', '''
        def test_child_forms():
            item = ${Main}Factory()
            for i in range(5):
                form = ${Child}Form(data={"$main": item.pk, "label": f"x{i}", "position": i, "value": "3.00"})
                assert form.is_valid(), form.errors
                form.save()
            assert $Child.objects.for_parent(item).total_value() == Decimal("15.00")
        ''',
    ],
    "filters": [
        '''
        def test_by_status():
            ${Main}Factory.create_batch(6, status="active")
            ${Main}Factory.create_batch(4, status="draft")
            assert ${Main}Filter({"status": "active"}, queryset=$Main.objects.all()).qs.count() == 6
        ''', '''
        def test_by_name():
            ${Main}Factory.create_batch(5)
            ${Main}Factory(name="Red lamp")
            ${Main}Factory(name="Blue lamp")
            ${Main}Factory(name="Red chair")
            qs = ${Main}Filter({"name": "lamp"}, queryset=$Main.objects.all()).qs
            assert sorted(qs.values_list("name", flat=True)) == ["Blue lamp", "Red lamp"]
        ''', '''
        def test_invalid_amount_is_an_error():
            f = ${Main}Filter({"min_amount": "lots"}, queryset=$Main.objects.all())
            assert not f.is_valid()
        ''', '''
        def test_amount_range():
            for amount in ("5.00", "15.00", "25.00", "35.00", "45.00", "55.00"):
                ${Main}Factory(amount=Decimal(amount))
            f = ${Main}Filter({"min_amount": "10", "max_amount": "40"}, queryset=$Main.objects.all())
            assert f.qs.count() == 3
        ''', '''
        def test_combined_filters():
            for i in range(12):
                ${Main}Factory(status="active" if i % 2 else "draft", is_featured=i % 3 == 0,
                               amount=Decimal(10 * i + 5))
            f = ${Main}Filter({"status": "active", "is_featured": "true", "min_amount": "20"},
                              queryset=$Main.objects.all())
            assert sorted(f.qs.values_list("amount", flat=True)) == [Decimal("35.00"), Decimal("95.00")]
        ''', '''
        def test_by_kind():
            express = $Kind.objects.get(code="express")
            ${Main}Factory.create_batch(4, kind=express)
            ${Main}Factory.create_batch(3)
            assert ${Main}Filter({"kind": express.pk}, queryset=$Main.objects.all()).qs.count() == 4
        ''', '''
        def test_children_by_position():
            item = ${Main}Factory()
            for position in range(10):
                ${Child}Factory($main=item, position=position)
            f = ${Child}Filter({"position__lt": "4", "$main": item.pk}, queryset=$Child.objects.all())
            assert f.qs.count() == 4
        ''', '''
        def test_children_by_label():
            for i in range(4):
                ${Child}Factory(label=f"alpha-{i}")
            ${Child}Factory(label="beta-1")
            f = ${Child}Filter({"label__icontains": "alpha"}, queryset=$Child.objects.all())
            assert f.qs.count() == 4
        ''', '''
        def test_children_by_value():
            item = ${Main}Factory()
            for value in ("1.00", "2.00", "3.00", "4.00", "5.00", "6.00"):
                ${Child}Factory($main=item, value=Decimal(value))
            f = ${Child}Filter({"value__gte": "2.50", "value__lte": "5.50"}, queryset=$Child.objects.all())
            assert f.qs.count() == 3
        ''',
    ],
    "services": [
        '''
        def test_no_discount_on_nothing():
            assert services.best_discount(Decimal("0"), 0) == Decimal("0.00")
        ''', '''
        @pytest.mark.parametrize("amount", ["1.00", "49.99", "250.00", "999.99"])
        def test_discount_never_exceeds_the_amount(amount):
            for tier in services.Tier:
                for quantity in range(0, 60, 3):
                    assert Decimal("0") <= services.best_discount(Decimal(amount), quantity, tier) <= Decimal(amount)
        ''', '''
        @pytest.mark.django_db
        def test_summary_counts_and_totals():
            ${Main}Factory.create_batch(2, status="active", amount=Decimal("10.00"))
            ${Main}Factory(status="draft", amount=Decimal("5.50"))
            ${Child}Factory.create_batch(2)
            summary = services.summarize()
            assert summary["count"] == 5
            assert summary["by_status"]["active"] == 4
        ''', '''
        def test_better_tiers_never_pay_more():
            for quantity in (1, 5, 10, 20, 40):
                for amount in ("12.00", "120.00", "480.00"):
                    prices = [services.price(Decimal(amount), quantity, tier) for tier in services.Tier]
                    assert prices == sorted(prices, reverse=True)
        ''', '''
        def test_rules_are_well_formed():
            assert len(services.RULES) >= 10
            assert all(rule.threshold > 0 and rule.rate > 0 for rule in services.RULES)
        ''', '''
        def test_split_adds_up():
            for parts in range(1, 40):
                for total in ("100.00", "99.99", "0.07"):
                    assert sum(split(Decimal(total), parts)) == Decimal(total)
        ''', '''
        @pytest.mark.django_db
        def test_summary_of_nothing():
            assert services.summarize() == {"count": 0, "total": "0.00", "average": "0.00",
                                            "max_quantity": 0, "by_status": {}, "children": 0}
        ''', '''
        def test_settlements_round_trip_through_the_client():
            for name, model in payments.MODELS.items():
                data = {key: None for key in model.attribute_map.values()}
                item = model.from_dict(data)
                assert item == model.from_dict(item.to_dict(serialize=True)), name
            assert services.settlement_status("succeeded") is payments.PaymentStatus.SUCCEEDED
        ''', '''
        @pytest.mark.django_db
        def test_summary_by_status():
            for status, n in (("draft", 4), ("active", 6), ("archived", 2)):
                ${Main}Factory.create_batch(n, status=status, amount=Decimal("3.00"))
            summary = services.summarize()
            assert summary["by_status"] == {"draft": 4, "active": 6, "archived": 2}
            assert summary["total"] == "36.00"
        ''',
    ],
    "signals": [
        '''
        def test_creation_writes_one_event():
            item = ${Main}Factory()
            assert $Audit.objects.filter($main=item).count() == 1
        ''', '''
        def test_updates_write_none():
            item = ${Main}Factory()
            for _ in range(5):
                item.quantity += 1
                item.save()
            assert $Audit.objects.filter($main=item).count() == 1
        ''', '''
        def test_bulk_create_skips_signals():
            $Main.objects.bulk_create([$Main(name=f"Bulk {i}", slug=f"bulk-{i}") for i in range(50)])
            assert not $Audit.objects.exists()
        ''', '''
        def test_events_go_with_their_parent():
            items = ${Main}Factory.create_batch(4)
            items[0].delete()
            assert $Audit.objects.count() == 3
        ''', '''
        def test_each_creation_is_recorded():
            ${Main}Factory.create_batch(7)
            assert $Audit.objects.filter(label="created").count() == 7
        ''', '''
        def test_raw_saves_are_not_audited():
            item = ${Main}Factory()
            record_creation($Main, item, created=True, raw=True)
            assert $Audit.objects.filter($main=item).count() == 1
        ''', '''
        def test_creation_through_the_manager_is_recorded():
            for i in range(8):
                $Main.objects.create(name=f"Managed {i}", slug=f"managed-{i}")
            assert $Audit.objects.count() == 8
        ''',
    ],
    "serializers": [
        '''
        def test_representation():
            item = ${Main}Factory(amount=Decimal("3.00"), quantity=3)
            data = ${Main}Serializer(item).data
            assert data["total_value"] == "9.00"
            assert data["slug"] == item.slug
        ''', '''
        def test_many():
            ${Main}Factory.create_batch(20)
            data = ${Main}Serializer($Main.objects.all(), many=True).data
            assert len(data) == 20
            assert all(Decimal(row["total_value"]) == Decimal(row["amount"]) * row["quantity"] for row in data)
        ''', '''
        def test_slug_is_lowercased():
            s = ${Main}Serializer(data={"name": "N", "slug": "MiXeD", "amount": "1.00", "quantity": 1})
            assert s.is_valid(), s.errors
            assert s.validated_data["slug"] == "mixed"
        ''', '''
        def test_child_round_trip():
            for child in ${Child}Factory.create_batch(4, value=Decimal("7.70")):
                data = ${Child}Serializer(child).data
                s = ${Child}Serializer(data={**data, "label": data["label"] + "-copy"})
                assert s.is_valid(), s.errors
                assert s.save().value == Decimal("7.70")
        ''', '''
        def test_status_must_be_a_choice():
            s = ${Main}Serializer(data={"name": "N", "slug": "n", "status": "lost"})
            assert not s.is_valid()
            assert "status" in s.errors
        ''', '''
        def test_many_children():
            items = ${Main}Factory.create_batch(8)
            for item in items:
                ${Child}Factory.create_batch(3, $main=item)
            data = ${Child}Serializer($Child.objects.select_related("$main"), many=True).data
            assert len(data) == 24
            assert {row["$main"] for row in data} == {item.pk for item in items}
        ''', '''
        def test_update_through_the_serializer():
            items = ${Main}Factory.create_batch(6, quantity=1)
            for item in items:
                s = ${Main}Serializer(item, data={"quantity": 5}, partial=True)
                assert s.is_valid(), s.errors
                s.save()
            assert set($Main.objects.values_list("quantity", flat=True)) == {5}
        ''', '''
        def test_create_many():
            payloads = [{"name": f"S {i}", "slug": f"S-{i}", "status": "draft", "amount": f"{i}.10",
                         "quantity": i} for i in range(8)]
            s = ${Main}Serializer(data=payloads, many=True)
            assert s.is_valid(), s.errors
            s.save()
            assert sorted($Main.objects.values_list("slug", flat=True)) == sorted(f"s-{i}" for i in range(8))
        ''', '''
        def test_duplicate_slug_is_refused():
            ${Main}Factory(slug="taken")
            s = ${Main}Serializer(data={"name": "N", "slug": "taken", "amount": "1.00", "quantity": 1})
            assert not s.is_valid()
            assert "slug" in s.errors
        ''',
    ],
    "querysets": [
        '''
        def test_active():
            ${Main}Factory.create_batch(5, status="active")
            ${Main}Factory.create_batch(3, status="archived")
            assert $Main.objects.active().count() == 5
        ''', '''
        def test_featured():
            ${Main}Factory(status="active", is_featured=True)
            ${Main}Factory(status="draft", is_featured=True)
            ${Main}Factory.create_batch(4, status="active")
            assert $Main.objects.featured().count() == 1
        ''', '''
        def test_search():
            ${Main}Factory.create_batch(4)
            ${Main}Factory(name="Garden hose")
            ${Main}Factory(name="Kitchen sink")
            assert [i.name for i in $Main.objects.search("hose")] == ["Garden hose"]
        ''', '''
        def test_with_totals():
            items = ${Main}Factory.create_batch(3)
            for n, item in enumerate(items, start=2):
                ${Child}Factory.create_batch(n, $main=item, value=Decimal("2.50"))
            annotated = {i.pk: (i.child_count, i.child_value) for i in $Main.objects.with_totals()}
            assert [annotated[i.pk] for i in items] == [(2, Decimal("5.00")), (3, Decimal("7.50")),
                                                        (4, Decimal("10.00"))]
        ''', '''
        def test_with_totals_without_children():
            item = ${Main}Factory()
            annotated = $Main.objects.with_totals().get(pk=item.pk)
            assert (annotated.child_count, annotated.child_value) == (0, Decimal("0.00"))
        ''', '''
        def test_total_value_of_children():
            item = ${Main}Factory()
            for value in ("1.10", "2.20", "3.30", "4.40", "5.50"):
                ${Child}Factory($main=item, value=Decimal(value))
            assert $Child.objects.for_parent(item).total_value() == Decimal("16.50")
        ''', '''
        def test_search_matches_slugs_too():
            ${Main}Factory(name="Plain name", slug="hidden-keyword")
            ${Main}Factory.create_batch(5)
            assert $Main.objects.search("keyword").count() == 1
        ''',
    ],
    "permissions": [
        '''
        def test_anonymous_cannot_list(anonymous_api_client):
            assert anonymous_api_client.get(reverse("$app-api:$main-list")).status_code == 403
        ''', '''
        def test_anonymous_cannot_create(anonymous_api_client):
            response = anonymous_api_client.post(reverse("$app-api:$main-list"), {"name": "x"})
            assert response.status_code == 403
        ''', '''
        def test_logged_in_can_list(client, customer_user):
            ${Main}Factory.create_batch(5)
            client.force_login(customer_user)
            assert client.get(reverse("$app-api:$main-list")).json()["count"] == 5
        ''', '''
        def test_admin_needs_staff(client, customer_user):
            client.force_login(customer_user)
            response = client.get(reverse("admin:${app}_${mainlower}_changelist"))
            assert response.status_code == 302
        ''', '''
        def test_staff_without_permission_is_refused(staff_client):
            response = staff_client.get(reverse("admin:${app}_${mainlower}_changelist"))
            assert response.status_code == 403
        ''', '''
        def test_html_pages_are_public(client):
            ${Main}Factory(slug="public")
            assert client.get(reverse("$app:detail", kwargs={"slug": "public"})).status_code == 200
            assert client.get(reverse("$app:list")).status_code == 200
        ''', '''
        def test_logged_in_can_create(client, customer_user):
            client.force_login(customer_user)
            payload = {"name": "Mine", "slug": "mine", "amount": "2.00", "quantity": 1}
            response = client.post(reverse("$app-api:$main-list"), payload, content_type="application/json")
            assert response.status_code == 201, response.content
        ''',
    ],
}

ADMIN_CASES = [
    '''
    def test_changelist(admin_client):
        ${Main}Factory.create_batch(5)
        assert admin_client.get(reverse("admin:${app}_${mainlower}_changelist")).status_code == 200
    ''', '''
    def test_search(admin_client):
        ${Main}Factory(name="Findable thing")
        response = admin_client.get(reverse("admin:${app}_${mainlower}_changelist"), {"q": "Findable"})
        assert b"Findable thing" in response.content
    ''', '''
    def test_filter_by_status(admin_client):
        ${Main}Factory.create_batch(3, status="archived")
        response = admin_client.get(reverse("admin:${app}_${mainlower}_changelist"), {"status__exact": "archived"})
        assert response.context["cl"].result_count == 3
    ''', '''
    def test_add_page(admin_client):
        assert admin_client.get(reverse("admin:${app}_${mainlower}_add")).status_code == 200
    ''', '''
    def test_change_page_with_inlines(admin_client):
        item = ${Main}Factory()
        ${Child}Factory.create_batch(3, $main=item)
        url = reverse("admin:${app}_${mainlower}_change", args=[item.pk])
        assert admin_client.get(url).status_code == 200
    ''', '''
    def test_add_through_the_admin(admin_client):
        url = reverse("admin:${app}_${mainlower}_add")
        data = {"name": "Admin made", "slug": "admin-made", "status": "draft", "amount": "1.00",
                "quantity": "1", "metadata": "{}"}
        for inline in admin_client.get(url).context["inline_admin_formsets"]:
            prefix = inline.formset.prefix
            data.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"})
        response = admin_client.post(url, data)
        assert response.status_code == 302, response.context and response.context["errors"]
    ''', '''
    def test_children_changelist(admin_client):
        ${Child}Factory.create_batch(4)
        assert admin_client.get(reverse("admin:${app}_${childlower}_changelist")).status_code == 200
    ''', '''
    def test_delete_confirmation_lists_the_children(admin_client):
        item = ${Main}Factory()
        ${Child}Factory(label="doomed-child", $main=item)
        response = admin_client.get(reverse("admin:${app}_${mainlower}_delete", args=[item.pk]))
        assert b"doomed-child" in response.content
    ''', '''
    def test_delete_selected_action(admin_client):
        items = ${Main}Factory.create_batch(5)
        data = {"action": "delete_selected", "_selected_action": [i.pk for i in items[:3]], "post": "yes"}
        response = admin_client.post(reverse("admin:${app}_${mainlower}_changelist"), data)
        assert response.status_code == 302
        assert $Main.objects.count() == 2
    ''', '''
    def test_sorted_changelist(admin_client):
        ${Main}Factory.create_batch(12)
        response = admin_client.get(reverse("admin:${app}_${mainlower}_changelist"), {"o": "-4"})
        amounts = [row.amount for row in response.context["cl"].result_list]
        assert amounts == sorted(amounts, reverse=True)
    ''', '''
    def test_history_page(admin_client):
        item = ${Main}Factory()
        assert admin_client.get(reverse("admin:${app}_${mainlower}_history", args=[item.pk])).status_code == 200
    ''', '''
    def test_kind_changelist(admin_client):
        response = admin_client.get(reverse("admin:${app}_${kindlower}_changelist"))
        assert b"Standard" in response.content
    ''', '''
    def test_child_change_page(admin_client):
        child = ${Child}Factory(label="editable-child")
        response = admin_client.get(reverse("admin:${app}_${childlower}_change", args=[child.pk]))
        assert b"editable-child" in response.content
    ''',
]


def long_file(kind, app, n):
    v = dict(app.vars(), mainlower=app.Main.lower())
    head = T(HEADER[kind], **v)
    if kind == "exports":
        sizes = [60, 120, 240, 480, 960, 1920]
        cases = [(s, st) for s in sizes for st in ("draft", "active", "archived", "all")][:n]
        body = T('''


            @pytest.mark.parametrize("size,status", $cases)
            def test_export(client, size, status):
                for s in ("draft", "active", "archived"):
                    make(size, s)
                params = {} if status == "all" else {"status": status}
                rows = read(client.get(reverse("$app:export"), params))
                assert rows[0] == ["id", "name", "slug", "status", "amount", "quantity"]
                assert len(rows) == 1 + (3 * size if status == "all" else size)
                if status != "all":
                    assert {r[3] for r in rows[1:]} == {status}
                assert sum(Decimal(r[4]) for r in rows[1:]) == sum(
                    $Main.objects.filter(**params).values_list("amount", flat=True))


            def test_export_is_an_attachment(client):
                response = client.get(reverse("$app:export"))
                assert response["Content-Disposition"] == 'attachment; filename="$mains.csv"'
        ''', cases=repr(cases), **v)
    elif kind == "reports":
        body = T('''


            @pytest.mark.parametrize("seed", range($n))
            def test_summary_matches_the_rows(client, seed):
                rows = [$Main(name=f"R {seed} {i}", slug=f"r-{seed}-{i}", status=STATUSES[(i + seed) % 3],
                              amount=Decimal((i * 7 + seed) % 300) + Decimal("0.99"), quantity=(i * 3) % 11)
                        for i in range(100 + seed * 20)]
                $Main.objects.bulk_create(rows)
                lines = 2 + seed % 3
                $Child.objects.bulk_create(
                    $Child($main=row, label=f"line-{j}", position=j, value=Decimal(j) + Decimal("0.50"))
                    for row in rows for j in range(lines))
                data = client.get(reverse("$app:summary")).json()
                assert data["count"] == len(rows)
                assert data["children"] == len(rows) * lines
                assert Decimal(data["total"]) == sum(r.amount for r in rows)
                for status in STATUSES:
                    expected = sum(r.status == status for r in rows)
                    assert data["by_status"].get(status, 0) == expected
                    page = client.get(reverse("$app:list"), {"status": status})
                    assert page.context["paginator"].count == expected
                totals = {item.pk: (item.child_count, item.child_value) for item in $Main.objects.with_totals()}
                assert set(totals.values()) == {(lines, sum(Decimal(j) + Decimal("0.50") for j in range(lines)))}
                export = b"".join(client.get(reverse("$app:export")).streaming_content).decode()
                exported = list(csv.DictReader(io.StringIO(export)))
                assert sum(Decimal(r["amount"]) for r in exported) == Decimal(data["total"])
                assert services.summarize() == data
        ''', n=n, **v)
    else:  # admin: pytest-django's admin_client, a superuser with a real password hash each test
        v.update(childlower=app.Child.lower(), kindlower=app.Kind.lower())
        return head + "".join("\n\n" + T(c, **v) for c in ADMIN_CASES[:n])
    return head + "\n\n" + body


def short_file(kind, app, n):
    v = dict(app.vars(), mainlower=app.Main.lower())
    cases = CASES[kind][:n]
    return T(HEADER[kind], **v) + "".join("\n\n" + T(c, **v) for c in cases)


def legacy_tests(app):
    return T('''
        """Tests of $app, from before the move to pytest (Django's TestCase, still run by pytest-django)."""
        from decimal import Decimal

        from django.contrib.auth import get_user_model
        from django.test import TestCase
        from django.urls import reverse

        from $app import services
        from $app.models import $Audit, $Child, $Kind, $Main


        class ${Main}ModelTests(TestCase):
            @classmethod
            def setUpTestData(cls):
                cls.kind = $Kind.objects.get(code="standard")
                cls.item = $Main.objects.create(name="Legacy item", slug="legacy-item", status="active",
                                                kind=cls.kind, amount=Decimal("10.00"), quantity=2)

            def test_str(self):
                self.assertEqual(str(self.item), "Legacy item")

            def test_total_value(self):
                self.assertEqual(self.item.total_value, Decimal("20.00"))

            def test_audit_trail(self):
                self.assertEqual($Audit.objects.filter($main=self.item).count(), 1)

            def test_children(self):
                for i in range(3):
                    $Child.objects.create($main=self.item, label=f"c{i}", value=Decimal("1.50"))
                self.assertEqual($Child.objects.for_parent(self.item).total_value(), Decimal("4.50"))


        class ${Main}ViewTests(TestCase):
            @classmethod
            def setUpTestData(cls):
                for i in range(3):
                    $Main.objects.create(name=f"Shown {i}", slug=f"shown-{i}", status="active")
                cls.user = get_user_model().objects.create(username="viewer", is_staff=True)

            def test_list(self):
                response = self.client.get(reverse("$app:list"))
                self.assertContains(response, "Shown 0")
                self.assertContains(response, "Shown 2")

            def test_detail(self):
                self.assertContains(self.client.get(reverse("$app:detail", args=["shown-1"])), "Shown 1")

            def test_dashboard(self):
                self.client.force_login(self.user)
                self.assertContains(self.client.get(reverse("$app:dashboard")), "Total: 3")

            def test_summary(self):
                self.assertEqual(self.client.get(reverse("$app:summary")).json()["count"], 3)


        class PricingTests(TestCase):
            def test_price_is_never_negative(self):
                for quantity in (1, 10, 100):
                    self.assertGreaterEqual(services.price(Decimal("3.00"), quantity), 0)
    ''', **app.vars())


# ---------------------------------------------------------------------------------------------

def main():
    if sys.argv[1:] == ["--requirements"]:  # what the project's venv needs, for real.sh
        sys.stdout.write(REQUIREMENTS)
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="the folder to write the project into (must not exist, or be empty)")
    ap.add_argument("--apps", type=int, help="apps (default 8; --small: 3)")
    ap.add_argument("--files", type=int, help="test files in all (default 44; --small: 6)")
    ap.add_argument("--tests-per-file",
                    help="tests in a short file, LO-HI (default 5-9; --small: 3-8)")
    ap.add_argument("--models", type=int, help="models per app (default 14; --small: 8)")
    ap.add_argument("--weight", type=int,
                    help="classes in the generated payments client (default 2400; --small: 300)")
    ap.add_argument("--rules", type=int, help="pricing rules per app (default 160; --small: 60)")
    ap.add_argument("--small", action="store_true",
                    help="a small project for quick runs (3 apps, 6 files, a lighter start-up)")
    ap.add_argument("--python", default=sys.executable,
                    help="the Python with the requirements, to run makemigrations (default: this one)")
    a = ap.parse_args()
    small = a.small
    n_apps = a.apps or (3 if small else 8)
    n_files = a.files or (6 if small else 44)
    models = a.models or (8 if small else 14)
    weight = a.weight if a.weight is not None else (300 if small else 2400)
    rules = a.rules if a.rules is not None else (60 if small else 160)
    lo, hi = (int(x) for x in (a.tests_per_file or ("3-8" if small else "5-9")).split("-"))
    if not 2 <= n_apps <= len(APPS):
        ap.error(f"--apps must be 2..{len(APPS)}")
    if n_files < n_apps:
        ap.error("--files must be at least --apps")
    if os.path.exists(a.out) and os.listdir(a.out):
        ap.error(f"{a.out} exists and is not empty")
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)

    apps = []
    for i, (label, main_model, nouns) in enumerate(APPS[:n_apps]):
        apps.append(App(i, label, main_model, nouns, models, apps[-1] if apps else None,
                        legacy=(i == n_apps - 1)))

    # Migrations the way a team makes them: the first schema, makemigrations; a change (an
    # external reference and its index), makemigrations again; a hand-written data migration.
    project_files(out, apps, weight)
    for app in apps:
        app_files(out, app, v2=False, rules=rules)
    env = dict(os.environ, DATABASE_URL="sqlite://:memory:", PYTHONDONTWRITEBYTECODE="1")
    mk = [a.python, "manage.py", "makemigrations", "--no-color", "-v", "0"]
    subprocess.run(mk, cwd=out, env=env, check=True)
    for app in apps:
        write(out, f"{app.label}/models.py", models_py(app, v2=True))
    subprocess.run(mk, cwd=out, env=env, check=True)
    for app in apps:
        mdir = os.path.join(out, app.label, "migrations")
        last = sorted(f[:-3] for f in os.listdir(mdir) if f[0].isdigit())[-1]
        n = int(last[:4]) + 1
        write(out, f"{app.label}/migrations/{n:04d}_seed_kinds.py", seed_migration(app, last))

    # Tests: the last app keeps a plain tests.py; the others share the rest of the files, short
    # ones mostly, the long kinds (exports, reports, admin) one each in the first apps.
    folder_apps = [a_ for a_ in apps if not a_.legacy]
    n_long = min(len(LONG_KINDS), max(1, n_files // 14), len(folder_apps))
    kinds = {a_.label: list(SHORT_KINDS) for a_ in folder_apps}
    for i in range(n_long):
        kinds[folder_apps[i].label].insert(1, LONG_KINDS[i])
    rng = random.Random("tests")
    written = 0
    per_app = {a_.label: 0 for a_ in folder_apps}
    i = 0
    while written < n_files - 1:
        app = folder_apps[i % len(folder_apps)]
        i += 1
        k = per_app[app.label]
        if k >= len(kinds[app.label]):
            if all(per_app[x.label] >= len(kinds[x.label]) for x in folder_apps):
                ap.error(f"at most {sum(len(k) for k in kinds.values()) + 1} files with {n_apps} apps")
            continue
        per_app[app.label] += 1
        kind = kinds[app.label][k]
        if kind in LONG_KINDS:
            text = long_file(kind, app, (7 if small else len(ADMIN_CASES)) if kind == "admin"
                             else (8 if small else 24))
        else:
            text = short_file(kind, app, rng.randint(lo, hi))
        write(out, f"{app.label}/tests/test_{kind}.py", text)
        written += 1
    for app in folder_apps:
        write(out, f"{app.label}/tests/__init__.py", "")
        write(out, f"{app.label}/tests/factories.py", factories_py(app))
    legacy = apps[-1]
    write(out, f"{legacy.label}/tests.py", legacy_tests(legacy))
    write(out, f"{legacy.label}/factories.py", factories_py(legacy))
    for root, dirs, _ in os.walk(out):
        if "__pycache__" in dirs:
            shutil.rmtree(os.path.join(root, "__pycache__"))
    print(f"{out}: {n_apps} apps, {n_apps * (len(apps[0].children) + 2)} models, {n_files} test files")


if __name__ == "__main__":
    main()

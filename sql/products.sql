-- The products beyond Transactions (README "Products beyond Transactions"): their data
-- tables. Loaded after schema.sql; item_products, which says which Item has which product,
-- is in schema.sql with the other Item tables.



-- /transactions/recurring/get: one row per stream. Each read is a full snapshot, so a stream
-- it no longer lists gets removed_at (and comes back if listed again). Amounts as Plaid sends
-- them: outflows positive, inflows negative.
CREATE TABLE plaid_sync.recurring_streams (
    stream_id                 text NOT NULL,
    item_id                   text NOT NULL REFERENCES plaid_sync.items (item_id),
    account_id                text,
    direction                 text NOT NULL CHECK (direction IN ('inflow', 'outflow')),
    description               text,
    merchant_name             text,
    frequency                 text,
    status                    text,
    is_active                 boolean,
    average_amount            numeric,
    last_amount               numeric,
    iso_currency_code         text,
    unofficial_currency_code  text,
    first_date                date,
    last_date                 date,
    predicted_next_date       date,
    -- No foreign key: a stream may name transactions a sync already removed.
    transaction_ids           text[] NOT NULL DEFAULT '{}',
    personal_finance_category jsonb,
    -- The response's updated_datetime: when Plaid last changed the Item's streams.
    updated_datetime          timestamptz,
    data                      jsonb NOT NULL,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    removed_at                timestamptz,
    CONSTRAINT recurring_streams_pkey PRIMARY KEY (stream_id, item_id)
);
-- The apply's snapshot comparison, and reading an Item's streams.
CREATE INDEX recurring_streams_item_idx ON plaid_sync.recurring_streams (item_id);

-- /liabilities/get: one row per account and kind. Each read is a full snapshot, so a
-- liability it no longer lists gets removed_at. Typed columns for the figures people query;
-- data keeps Plaid's object (every field, e.g. a mortgage's property_address).
CREATE TABLE plaid_sync.liabilities (
    account_id                   text NOT NULL,
    kind                         text NOT NULL CHECK (kind IN ('credit', 'student', 'mortgage')),
    item_id                      text NOT NULL REFERENCES plaid_sync.items (item_id),
    -- The account's balances.current in the same response.
    current_balance              numeric,
    last_statement_balance       numeric,
    minimum_payment_amount       numeric,
    next_payment_due_date        date,
    -- Mortgages: the next monthly payment.
    next_monthly_payment         numeric,
    last_payment_amount          numeric,
    last_payment_date            date,
    is_overdue                   boolean,
    past_due_amount              numeric,
    -- Student: interest_rate_percentage; mortgage: interest_rate.percentage; credit: the
    -- purchase APR (every APR is in aprs).
    interest_rate_percentage     numeric,
    aprs                         jsonb,
    origination_principal_amount numeric,
    origination_date             date,
    data                         jsonb NOT NULL,
    created_at                   timestamptz NOT NULL DEFAULT now(),
    updated_at                   timestamptz NOT NULL DEFAULT now(),
    removed_at                   timestamptz,
    PRIMARY KEY (account_id, kind, item_id)
);
-- The apply's snapshot comparison, and reading an Item's liabilities.
CREATE INDEX liabilities_item_idx ON plaid_sync.liabilities (item_id);

-- Investments. securities: Plaid's securities, shared by every Item that holds or trades
-- them (security data is not account-specific), kept at their latest version.
CREATE TABLE plaid_sync.securities (
    security_id              text PRIMARY KEY,
    ticker_symbol            text,
    name                     text,
    type                     text,
    subtype                  text,
    close_price              numeric,
    close_price_as_of        date,
    iso_currency_code        text,
    unofficial_currency_code text,
    cusip                    text,
    isin                     text,
    sedol                    text,
    institution_security_id  text,
    institution_id           text,
    market_identifier_code   text,
    is_cash_equivalent       boolean,
    data                     jsonb NOT NULL,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now()
);

-- /investments/holdings/get: one row per account and security. Each read is a full
-- snapshot: a position sold out (or moved to a new security_id) gets removed_at.
CREATE TABLE plaid_sync.holdings (
    account_id               text NOT NULL,
    security_id              text NOT NULL,
    item_id                  text NOT NULL REFERENCES plaid_sync.items (item_id),
    -- Up to 16 decimals from Plaid, kept as sent.
    quantity                 numeric,
    institution_price        numeric,
    institution_price_as_of  date,
    -- As the institution reports it, not quantity × price.
    institution_value        numeric,
    -- The position's total cost basis.
    cost_basis               numeric,
    iso_currency_code        text,
    unofficial_currency_code text,
    data                     jsonb NOT NULL,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    removed_at               timestamptz,
    PRIMARY KEY (account_id, security_id, item_id)
);
-- The apply's snapshot comparison, and reading an Item's holdings.
CREATE INDEX holdings_item_idx ON plaid_sync.holdings (item_id);

-- /investments/transactions/get, read over date windows. Plaid lists no removals: one a
-- window read in full no longer lists was cancelled and gets removed_at.
CREATE TABLE plaid_sync.investment_transactions (
    investment_transaction_id text NOT NULL,
    item_id                   text NOT NULL REFERENCES plaid_sync.items (item_id),
    account_id                text,
    security_id               text,
    date                      date,
    transaction_datetime      timestamptz,
    name                      text,
    quantity                  numeric,
    -- Positive: cash debited (a purchase); negative: cash credited.
    amount                    numeric,
    price                     numeric,
    fees                      numeric,
    type                      text,
    subtype                   text,
    iso_currency_code         text,
    unofficial_currency_code  text,
    data                      jsonb NOT NULL,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    removed_at                timestamptz,
    CONSTRAINT investment_transactions_pkey PRIMARY KEY (investment_transaction_id, item_id)
);
-- The apply's window comparison (an Item's rows by date).
CREATE INDEX investment_transactions_item_date_idx ON plaid_sync.investment_transactions (item_id, date);

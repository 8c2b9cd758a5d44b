-- clickedge collector schema, version 1: clicks, actions, action_clicks.
--
-- Both tables are partitioned by day (UTC) on the click's time, taken from
-- the click_id's UUIDv7 (its millisecond). That time is a function of the
-- click_id, so the primary key (click_id, click_ts) is unique exactly when
-- click_id is, across partitions. The collector creates each day's
-- partition before it inserts into it; the default partitions catch what
-- falls outside the days it creates (ids from a far-off clock).

CREATE TABLE clicks (
    click_id    uuid        NOT NULL,
    click_ts    timestamptz NOT NULL, -- the click_id's UUIDv7 time, ms
    ts          timestamptz NOT NULL, -- ts from the message (the edge's clock)
    link        text        NOT NULL,
    url         text        NOT NULL,
    rule        text        NOT NULL, -- '' for the link's own url
    region      text        NOT NULL,
    node        text        NOT NULL,
    country     text        NOT NULL, -- '' when unknown
    subdivision text        NOT NULL,
    city        text        NOT NULL,
    device      text        NOT NULL,
    os          text        NOT NULL,
    browser     text        NOT NULL,
    lang        text        NOT NULL,
    bot         boolean     NOT NULL,
    preview     boolean     NOT NULL,
    paused      boolean     NOT NULL,
    params      jsonb       NOT NULL, -- recorded query parameters, an object of strings
    catalog     text        NOT NULL, -- catalog version that routed the click
    truncated   text[],               -- parameters whose values were cut; NULL when none
    inserted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (click_id, click_ts)
) PARTITION BY RANGE (click_ts);

CREATE TABLE clicks_default PARTITION OF clicks DEFAULT;

CREATE TABLE actions (
    action_id   uuid        NOT NULL, -- sha256(adv\norder_id\naction\nstatus)[:16]
    click_id    uuid        NOT NULL,
    click_ts    timestamptz NOT NULL, -- the click_id's UUIDv7 time, ms
    adv         text        NOT NULL,
    action      text        NOT NULL,
    order_id    text        NOT NULL,
    status      text        NOT NULL CHECK (status IN ('pending', 'approved', 'declined')),
    amount      numeric,              -- NULL when the postback had none
    currency    text,
    ts          timestamptz NOT NULL, -- when the postback was received
    region      text        NOT NULL, -- of the registration node
    node        text        NOT NULL,
    inserted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (action_id, click_ts)
) PARTITION BY RANGE (click_ts);

CREATE TABLE actions_default PARTITION OF actions DEFAULT;

CREATE INDEX actions_order ON actions (adv, order_id, action);

-- An action_id is not derived from its click_id, so two postbacks for the
-- same order naming different clicks share an action_id but not a
-- partition. This unpartitioned table makes action_id unique on its own:
-- an action row is inserted only by the transaction that claims its id.
CREATE TABLE action_keys (
    action_id uuid        PRIMARY KEY,
    click_ts  timestamptz NOT NULL
);

-- Each action with its click (NULLs when the click is unknown), and the
-- latest status of its (adv, order_id, action): status moves only forward,
-- pending -> approved | declined, each move its own action_id.
CREATE VIEW action_clicks AS
SELECT a.action_id,
       a.click_id,
       a.adv,
       a.action,
       a.order_id,
       a.status,
       first_value(a.status) OVER w AS latest_status,
       a.status = first_value(a.status) OVER w AS is_latest,
       a.amount,
       a.currency,
       a.ts,
       a.region AS action_region,
       a.node AS action_node,
       c.link,
       c.rule,
       c.region AS click_region,
       c.node,
       c.country,
       c.device,
       c.click_ts
FROM actions a
LEFT JOIN clicks c ON c.click_id = a.click_id AND c.click_ts = a.click_ts
WINDOW w AS (PARTITION BY a.adv, a.order_id, a.action
             ORDER BY a.status <> 'pending' DESC, a.ts DESC, a.action_id);

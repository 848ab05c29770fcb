"""Team notifications: where an app's events go (webhooks, e-mail) and the queue that delivers them.

`targets` checks where a notification may go, `queue` keeps targets and
deliveries in the database, `sender` signs and sends one, `notifier` is the
background worker that turns controller events into deliveries and retries
them with backoff, `commands` is the user's side (notifications:*).
"""

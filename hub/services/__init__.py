"""The core's services: the functions that change state (reads are in `hub.selectors`).

One module per topic: `accounts` (workspaces, apps, API keys), `members` (invitations and roles),
`customers` (identify and contacts), `customer_refs` (resolving the customer references usage
events and API calls send, with the per-process cache), `customer_forwards` (customers and
contacts left for the destinations), `customer_merge` (the registration point other
packages use to move their rows when a placeholder customer is merged), `lifecycle` (installs,
subscriptions, reviews and their activities), `plans` (an app's price list). README's "What is where"
states the naming scheme.
"""

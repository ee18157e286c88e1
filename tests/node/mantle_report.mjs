// Drives @heymantle/client's getUsageMetricReport and getCustomer (usage), unmodified, against the hub.
import { MantleClient } from "@heymantle/client";

const { HUB_API_URL, HUB_APP_ID, HUB_API_KEY, HUB_METRIC_ID, HUB_CUSTOMER_TOKEN } = process.env;
const server = new MantleClient({ appId: HUB_APP_ID, apiKey: HUB_API_KEY, apiUrl: HUB_API_URL });
const asCustomer = new MantleClient({ appId: HUB_APP_ID, customerApiToken: HUB_CUSTOMER_TOKEN, apiUrl: HUB_API_URL });
const out = {};
out.appDaily = await server.getUsageMetricReport({ id: HUB_METRIC_ID, period: "daily" });
out.customerDaily = await server.getUsageMetricReport({ id: HUB_METRIC_ID, period: "daily", customerId: "shop-a" });
out.tokenMonthly = await asCustomer.getUsageMetricReport({ id: HUB_METRIC_ID, period: "monthly" });
out.tokenOther = await asCustomer.getUsageMetricReport({ id: HUB_METRIC_ID, customerId: "shop-b" });
out.unknown = await server.getUsageMetricReport({ id: "no-such-metric" });
out.customer = await asCustomer.getCustomer();
console.log(JSON.stringify(out));

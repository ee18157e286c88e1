// Drives the official @heymantle/client, unmodified, against the hub at HUB_API_URL.
// Prints one JSON object with what each call returned; the pytest side checks the database.
import { MantleClient } from "@heymantle/client";

const { HUB_API_URL, HUB_APP_ID, HUB_API_KEY } = process.env;
const server = new MantleClient({ appId: HUB_APP_ID, apiKey: HUB_API_KEY, apiUrl: HUB_API_URL });
const out = {};

out.identify = await server.identify({
  platform: "shopify",
  platformId: "gid-1001",
  myshopifyDomain: "client-shop.myshopify.com",
  name: "Client Shop",
  email: "owner@client-shop.test",
  platformPlanName: "basic",
  customFields: { tier: "gold", seats: 3 },
  contacts: [{ email: "ops@client-shop.test", label: "primary", name: "Ops", phone: "+1 555 0100" }],
  tags: ["beta"],
});
const token = out.identify.apiToken;

// As the customer (what an app's front end does), and as the server with ?id=.
const asCustomer = new MantleClient({ appId: HUB_APP_ID, customerApiToken: token, apiUrl: HUB_API_URL });
out.customerByToken = await asCustomer.getCustomer();
out.customerById = await server.getCustomer("client-shop.myshopify.com");

out.single = await server.sendUsageEvent({
  eventId: "client-evt-1",
  eventName: "report_generated",
  customerId: "gid-1001",
  timestamp: Date.UTC(2024, 2, 1, 12, 0, 0),
  properties: { rows: 42 },
});
out.singleAgain = await server.sendUsageEvent({
  eventId: "client-evt-1", eventName: "report_generated", customerId: "gid-1001", properties: { rows: 42 },
});
out.bulk = await server.sendUsageEvents({
  events: [
    { eventId: "client-evt-2", eventName: "api_call", customerId: "client-shop.myshopify.com", properties: { ms: 12 } },
    { eventId: "client-evt-3", eventName: "api_call", customerId: token, properties: { ms: 30 } },
  ],
});
out.customerEvent = await asCustomer.sendUsageEvent({ eventId: "client-evt-4", eventName: "page_view" });
out.invalid = await server.sendUsageEvent({ eventId: "client-evt-5", customerId: "gid-1001" });

const rotated = await server.identify({ platformId: "gid-1001", rotateApiToken: true });
out.rotatedDiffers = rotated.apiToken !== token;
out.oldTokenAfterRotate = await asCustomer.getCustomer();
console.log(JSON.stringify(out));
